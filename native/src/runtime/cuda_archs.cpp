#include "runtime/cuda_archs.h"

#include <cctype>
#include <vector>

namespace ln {

namespace {

struct ArchEntry {
  int major = 0, minor = 0;
  char suffix = 0;  // 0, 'a' or 'f'
  bool real = true, virt = true;
};

// One list entry; false for anything else (CMake's special values, a typo).
bool parse_entry(const std::string& s, ArchEntry* e) {
  size_t i = 0;
  int number = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i])) && i < 4) number = number * 10 + (s[i++] - '0');
  if (i < 2) return false;  // compute capabilities have two digits at least (75, 100)
  e->major = number / 10;
  e->minor = number % 10;
  if (i < s.size() && (s[i] == 'a' || s[i] == 'f')) e->suffix = s[i++];
  const std::string rest = s.substr(i);
  if (rest == "-real") e->virt = false;
  else if (rest == "-virtual") e->real = false;
  else if (!rest.empty()) return false;
  return true;
}

bool runs_on(const ArchEntry& e, int major, int minor) {
  if (e.suffix == 'a') return major == e.major && minor == e.minor;     // arch-specific: that GPU only
  const bool same_family = major == e.major && minor >= e.minor;
  if (e.real && same_family) return true;                               // machine code: same major, newer minor
  if (e.virt && e.suffix == 0) return major > e.major || same_family;   // PTX: compiled by the driver for newer GPUs
  return e.virt && same_family;                                         // family PTX stays in its family
}

}  // namespace

std::string cuda_arch_problem(const std::string& archs, int major, int minor) {
  std::vector<std::string> entries;
  std::string cur;
  for (char c : archs + ";") {
    if (c == ';' || c == ',') {
      if (!cur.empty()) entries.push_back(cur);
      cur.clear();
    } else if (!std::isspace(static_cast<unsigned char>(c))) {
      cur += c;
    }
  }
  if (entries.empty()) return "";
  for (const std::string& s : entries) {
    ArchEntry e;
    if (!parse_entry(s, &e)) return "";  // "all", "native", ...: nothing to tell from
    if (runs_on(e, major, minor)) return "";
  }
  const std::string cc = std::to_string(major) + std::to_string(minor);
  std::string list;
  for (const std::string& s : entries) list += (list.empty() ? "" : ";") + s;
  return "compute capability " + std::to_string(major) + "." + std::to_string(minor) +
         ", and this build's GPU code is for LN_CUDA_ARCHITECTURES=\"" + list +
         "\" only (its kernels cannot load there); rebuild for this GPU with LN_CUDA_ARCHITECTURES=\"" + cc + ";" +
         list + "\" npm rebuild langneurons (the CUDA toolkit must target sm_" + cc + ")";
}

}  // namespace ln
