#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "core/oom.h"

namespace ln {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw std::runtime_error(path + ": cannot stat: " + std::strerror(e));
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = int64_t(st.st_size);
  if (m->size_ > 0) {
    void* a = ::mmap(nullptr, size_t(m->size_), PROT_READ, MAP_PRIVATE, fd, 0);
    if (a == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      // ENOMEM: no address space left for it (a memory limit such as ulimit -v, or a 32-bit-sized space).
      if (e == ENOMEM) throw OutOfMemory("a memory map of " + path, double(m->size_));
      throw std::runtime_error(path + ": cannot memory-map: " + std::strerror(e));
    }
    m->addr_ = a;
  }
  ::close(fd);  // the mapping stays valid after close
  return m;
}

MappedFile::~MappedFile() {
  if (addr_) ::munmap(addr_, size_t(size_));
}

}  // namespace ln
