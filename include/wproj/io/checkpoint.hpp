// wproj — weight-matrix projection methods. MIT licence.
#pragma once

/// \file
/// Model checkpoints made of one or more safetensors files.
///
/// `Checkpoint` opens a single `.safetensors` file, a sharded checkpoint through its
/// `model.safetensors.index.json` (`{"metadata": {...}, "weight_map": {tensor: shard file}}`),
/// or a folder holding either (an index if present, else every `*.safetensors` file in it).
/// Every shard is validated on open; a tensor listed in two shards, a weight_map entry whose shard
/// lacks it, a shard tensor missing from the weight_map, or a shard name with a path separator is
/// rejected with `wproj::IoError`.
///
/// `CheckpointWriter` writes a single file, or — given a folder and a maximum shard size —
/// `model-0000i-of-0000N.safetensors` shards plus `model.safetensors.index.json`, with the same
/// streaming declare / begin / write / commit protocol as `SafetensorsWriter`.

#include "json.hpp"
#include "safetensors.hpp"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace wproj {
namespace io {

namespace detail {
inline bool endsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
inline bool isDirectory(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}
inline bool isRegularFile(const std::string& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}
inline std::vector<std::string> listDirectory(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) throw IoError(dir + ": cannot list folder: " + errnoText(errno));
  while (struct dirent* e = ::readdir(d)) {
    const std::string n = e->d_name;
    if (n != "." && n != "..") out.push_back(n);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}
}  // namespace detail

/// A model checkpoint: one or more validated safetensors files seen as one set of named tensors.
class Checkpoint {
 public:
  /// Opens `path` (a .safetensors file, an index .json, or a folder); throws IoError when invalid.
  explicit Checkpoint(const std::string& path) : m_path(path) {
    if (detail::isDirectory(path)) {
      const std::string index = path + "/model.safetensors.index.json";
      if (detail::isRegularFile(index)) {
        openIndex(index);
      } else {
        std::vector<std::string> files;
        for (const auto& n : detail::listDirectory(path))
          if (detail::endsWith(n, ".safetensors")) files.push_back(path + "/" + n);
        if (files.empty()) throw IoError(path + ": folder holds no .safetensors file and no model.safetensors.index.json");
        for (const auto& f : files) addShard(f, nullptr);
      }
    } else if (detail::endsWith(path, ".json")) {
      openIndex(path);
    } else {
      addShard(path, nullptr);
    }
  }

  Checkpoint(const Checkpoint&) = delete;
  Checkpoint& operator=(const Checkpoint&) = delete;
  /// Moves the open shards.
  Checkpoint(Checkpoint&&) = default;
  /// Moves the open shards.
  Checkpoint& operator=(Checkpoint&&) = default;

  /// The path this checkpoint was opened from.
  const std::string& path() const { return m_path; }
  /// Tensor names, sorted.
  const std::vector<std::string>& names() const { return m_names; }
  /// Number of shard files.
  std::size_t shardCount() const { return m_shards.size(); }
  /// The shard readers.
  const SafetensorsReader& shard(std::size_t i) const { return *m_shards[i]; }
  /// Metadata of the first shard (the index's "metadata" is not tensor metadata).
  const std::vector<std::pair<std::string, std::string>>& metadata() const { return m_shards.front()->metadata(); }

  /// True when some shard holds a tensor called `name`.
  bool contains(const std::string& name) const { return m_where.count(name) != 0; }
  /// The tensor's description; throws IoError if absent.
  const TensorInfo& info(const std::string& name) const { return readerOf(name).info(name); }
  /// The reader of the shard that holds `name`.
  const SafetensorsReader& readerOf(const std::string& name) const {
    auto it = m_where.find(name);
    if (it == m_where.end()) throw IoError(m_path + ": no tensor named '" + name + "'");
    return *m_shards[it->second];
  }
  /// The tensor as a `Scalar` matrix (copy).
  template <typename Scalar>
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> read(const std::string& name) const {
    return readerOf(name).template read<Scalar>(name);
  }
  /// A row-major view as `Scalar` (zero-copy when possible).
  template <typename Scalar>
  TensorView<Scalar> view(const std::string& name) const {
    return readerOf(name).template view<Scalar>(name);
  }
  /// Lets the kernel drop the tensor's pages from the resident set.
  void release(const std::string& name) const { readerOf(name).release(name); }
  /// Rows [row0, row0 + count) as `Scalar` into `dst` (see SafetensorsReader::readRows).
  template <typename Scalar>
  void readRows(const std::string& name, Index row0, Index count, Scalar* dst, bool releaseAfter = false) const {
    readerOf(name).template readRows<Scalar>(name, row0, count, dst, releaseAfter);
  }
  /// Throws IoError if any shard file changed size since it was opened (see MappedFile::checkUnchanged).
  void checkUnchanged() const {
    for (const auto& s : m_shards) s->checkUnchanged();
  }

  /// Total bytes of tensor data.
  std::uint64_t totalBytes() const {
    std::uint64_t n = 0;
    for (const auto& name : m_names) n += info(name).bytes();
    return n;
  }
  /// Total number of elements.
  std::uint64_t totalElements() const {
    std::uint64_t n = 0;
    for (const auto& name : m_names) n += info(name).count();
    return n;
  }

 private:
  void openIndex(const std::string& indexPath) {
    MappedFile f(indexPath);
    const JsonValue root =
        JsonParser::parse(reinterpret_cast<const char*>(f.data() ? f.data() : reinterpret_cast<const unsigned char*>("")), f.size(), indexPath);
    if (!root.isObject()) throw IoError(indexPath + ": index root is not a JSON object");
    const JsonValue* wm = root.find("weight_map");
    if (!wm || !wm->isObject()) throw IoError(indexPath + ": index has no \"weight_map\" object");
    const std::string dir = detail::dirName(indexPath);
    std::map<std::string, std::vector<std::string>> byShard;
    for (const auto& kv : wm->members()) {
      if (kv.first.find('\0') != std::string::npos)
        throw IoError(indexPath + ": weight_map tensor name '" + kv.first.substr(0, kv.first.find('\0')) +
                      "\\u0000...' contains a NUL character, which no tensor name may hold");
      if (!kv.second.isString()) throw IoError(indexPath + ": weight_map entry '" + kv.first + "' is not a string");
      const std::string& shard = kv.second.text();
      if (shard.find('\0') != std::string::npos)
        throw IoError(indexPath + ": weight_map entry '" + kv.first + "' names shard '" + shard.substr(0, shard.find('\0')) +
                      "\\u0000...', which contains a NUL character; expected a file name in the index's folder");
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." || shard == "..")
        throw IoError(indexPath + ": weight_map entry '" + kv.first + "' names shard '" + shard +
                      "', expected a file name in the index's folder");
      byShard[shard].push_back(kv.first);
    }
    if (byShard.empty()) throw IoError(indexPath + ": weight_map is empty");
    for (const auto& s : byShard) {
      std::map<std::string, bool> expected;
      for (const auto& n : s.second) expected[n] = true;
      addShard(dir + "/" + s.first, &expected);
    }
  }

  void addShard(const std::string& file, const std::map<std::string, bool>* expected) {
    auto reader = std::make_unique<SafetensorsReader>(file);
    const std::size_t idx = m_shards.size();
    for (const auto& t : reader->tensors()) {
      if (expected && !expected->count(t.name))
        throw IoError(file + ": tensor '" + t.name + "' is not listed for this shard in the index's weight_map");
      if (!m_where.emplace(t.name, idx).second)
        throw IoError(file + ": tensor '" + t.name + "' also appears in " + m_shards[m_where[t.name]]->path());
    }
    if (expected)
      for (const auto& kv : *expected)
        if (!reader->find(kv.first))
          throw IoError(file + ": weight_map lists tensor '" + kv.first + "' for this shard but the shard lacks it");
    m_shards.push_back(std::move(reader));
    m_names.clear();
    for (const auto& kv : m_where) m_names.push_back(kv.first);
  }

  std::string m_path;
  std::vector<std::unique_ptr<SafetensorsReader>> m_shards;
  std::map<std::string, std::size_t> m_where;
  std::vector<std::string> m_names;
};

/// Writes a checkpoint as one safetensors file or as shards plus an index (see the file comment).
/// If `out` ends in ".safetensors" one file is written there. Otherwise `out` is a folder (created
/// if missing): `model.safetensors` when everything fits in `maxShardBytes` (0 = no limit), else
/// `model-0000i-of-0000N.safetensors` files, filled in name order, and
/// `model.safetensors.index.json`. Files appear only at `commit()` (index last).
class CheckpointWriter {
 public:
  /// A writer to `out` (a .safetensors file or a folder) with shards of at most `maxShardBytes` (0 = no limit).
  explicit CheckpointWriter(const std::string& out, std::uint64_t maxShardBytes = 0)
      : m_out(out), m_maxShard(maxShardBytes) {}
  ~CheckpointWriter() {
    m_writers.clear();
    if (m_createdDir && !m_committed) ::rmdir(m_out.c_str());
  }
  CheckpointWriter(const CheckpointWriter&) = delete;
  CheckpointWriter& operator=(const CheckpointWriter&) = delete;

  /// Adds a `__metadata__` entry to every shard.
  CheckpointWriter& addMetadata(const std::string& key, const std::string& value) {
    m_metadata.emplace_back(key, value);
    return *this;
  }
  /// Declares a tensor (before begin()).
  CheckpointWriter& declare(const std::string& name, DType dtype, const std::vector<std::uint64_t>& shape) {
    TensorInfo t;
    t.name = name;
    t.dtype = dtype;
    t.shape = shape;
    t.end = SafetensorsWriter::byteSize(t, "CheckpointWriter::declare");
    return add(std::move(t));
  }
  /// Declares a tensor like `like` (any dtype, also an unknown one; see SafetensorsWriter::declare).
  CheckpointWriter& declare(const TensorInfo& like) {
    TensorInfo t = like;
    t.end = like.bytes();
    t.begin = 0;
    return add(std::move(t));
  }

  /// Assigns tensors to shards and writes every shard's header.
  void begin() {
    requireArg(!m_begun, "CheckpointWriter::begin", "state", "begun", "a single call");
    std::vector<std::string> files;
    std::vector<std::vector<const TensorInfo*>> groups;
    if (detail::endsWith(m_out, ".safetensors")) {
      files.push_back(m_out);
      groups.emplace_back();
      for (const auto& kv : m_decl) groups.back().push_back(&kv.second);
    } else {
      if (!detail::isDirectory(m_out)) {
        if (::mkdir(m_out.c_str(), 0777) != 0) throw IoError(m_out + ": cannot create output folder: " + detail::errnoText(errno));
        m_createdDir = true;
      }
      std::uint64_t cur = 0;
      groups.emplace_back();
      for (const auto& kv : m_decl) {
        const std::uint64_t b = kv.second.bytes();
        if (m_maxShard > 0 && !groups.back().empty() && cur + b > m_maxShard) {
          groups.emplace_back();
          cur = 0;
        }
        groups.back().push_back(&kv.second);
        cur += b;
      }
      if (groups.size() == 1) {
        files.push_back(m_out + "/model.safetensors");
      } else {
        char buf[64];
        for (std::size_t i = 0; i < groups.size(); ++i) {
          std::snprintf(buf, sizeof buf, "model-%05zu-of-%05zu.safetensors", i + 1, groups.size());
          files.push_back(m_out + "/" + buf);
        }
        m_indexPath = m_out + "/model.safetensors.index.json";
      }
    }
    for (std::size_t g = 0; g < groups.size(); ++g) {
      auto w = std::make_unique<SafetensorsWriter>(files[g]);
      for (const auto& kv : m_metadata) w->addMetadata(kv.first, kv.second);
      for (const TensorInfo* t : groups[g]) {
        w->declare(*t);
        m_shardOf[t->name] = g;
      }
      w->begin();
      m_writers.push_back(std::move(w));
    }
    m_begun = true;
  }

  /// Writes declared tensor `name` from a matrix (see SafetensorsWriter::write).
  template <typename Derived>
  void write(const std::string& name, const Eigen::MatrixBase<Derived>& m) {
    writerOf(name).write(name, m);
  }
  /// Writes declared tensor `name` from raw bytes in its dtype.
  void writeRaw(const std::string& name, const void* data, std::size_t bytes) { writerOf(name).writeRaw(name, data, bytes); }

  /// Commits every shard, then the index (if sharded).
  void commit() {
    if (!m_begun) begin();
    std::string index;
    if (!m_indexPath.empty()) {
      std::uint64_t total = 0;
      for (const auto& kv : m_decl) total += kv.second.bytes();
      index = "{\n  \"metadata\": {\"total_size\": " + std::to_string(total) + "},\n  \"weight_map\": {\n";
      bool first = true;
      for (const auto& kv : m_shardOf) {
        if (!first) index += ",\n";
        first = false;
        index += "    " + jsonString(kv.first) + ": " + jsonString(detail::baseName(m_writers[kv.second]->path()));
      }
      index += "\n  }\n}\n";
    }
    for (auto& w : m_writers) w->commit();
    if (!m_indexPath.empty()) {
      AtomicFile f(m_indexPath);
      f.write(index.data(), index.size());
      f.commit();
    }
    m_committed = true;
  }

  /// Paths of the files that commit() writes (after begin()).
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    for (const auto& w : m_writers) out.push_back(w->path());
    if (!m_indexPath.empty()) out.push_back(m_indexPath);
    return out;
  }

 private:
  CheckpointWriter& add(TensorInfo&& t) {
    requireArg(!m_begun, "CheckpointWriter::declare", "name", t.name, "a call before begin()");
    const std::string name = t.name;
    requireArg(m_decl.emplace(name, std::move(t)).second, "CheckpointWriter::declare", "name", name, "a name not declared before");
    return *this;
  }
  SafetensorsWriter& writerOf(const std::string& name) {
    if (!m_begun) begin();
    auto it = m_shardOf.find(name);
    if (it == m_shardOf.end()) throw InvalidArgument("CheckpointWriter: tensor '" + name + "' was not declared");
    return *m_writers[it->second];
  }

  std::string m_out;
  std::uint64_t m_maxShard;
  std::vector<std::pair<std::string, std::string>> m_metadata;
  std::map<std::string, TensorInfo> m_decl;
  std::map<std::string, std::size_t> m_shardOf;
  std::vector<std::unique_ptr<SafetensorsWriter>> m_writers;
  std::string m_indexPath;
  bool m_begun = false, m_committed = false, m_createdDir = false;
};

}  // namespace io
}  // namespace wproj
