// A read-only memory map of a whole file (checkpoint shards). Weights are used in place from the map: the OS
// pages them in on demand and can drop them under pressure, so a checkpoint never costs a private copy.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

namespace ln {

class MappedFile {
 public:
  // Throws std::runtime_error naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  int64_t size() const { return size_; }
  const uint8_t* data() const { return static_cast<const uint8_t*>(addr_); }

 private:
  MappedFile() = default;
  std::string path_;
  int64_t size_ = 0;
  void* addr_ = nullptr;
};

}  // namespace ln
