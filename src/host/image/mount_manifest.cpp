// The mount manifest on the host: checks, the binary form, its parser and
// the packer's hashing of trusted files. The parser treats an image's bytes
// as hostile: every count, offset and length is bounded before use.
#include "host/image/mount_manifest.h"

#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>

#include "host/image/le_bytes.h"

namespace teemate::image {

namespace {

using le::get32;
using le::get64;
using le::put32;
using le::put64;

constexpr size_t kHeader = sizeof(abi::ManifestHeader);
constexpr size_t kMount = sizeof(abi::ManifestMount);
constexpr size_t kFile = sizeof(abi::ManifestFile);

bool under(std::string_view path, std::string_view dir) {
  if (dir == "/") return path.size() > 1 && path[0] == '/';
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

std::string shown(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f || c == '"' || c == '\\') {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

Result<std::array<uint8_t, 32>> sha256_file(const std::filesystem::path& p, uint64_t* size) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return io_error("trusted file " + p.string(), errno);
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1) {
    return internal_error("trusted file " + p.string() + ": SHA-256 unavailable");
  }
  std::vector<char> buf(1 << 16);
  uint64_t total = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const std::streamsize n = in.gcount();
    if (n > 0) {
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(n));
      total += static_cast<uint64_t>(n);
    }
  }
  if (in.bad()) return io_error("trusted file " + p.string(), EIO);
  std::array<uint8_t, 32> d{};
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx.get(), d.data(), &len);
  *size = total;
  return d;
}

}  // namespace

const char* mount_type_name(abi::MountType type) {
  switch (type) {
    case abi::kMountUntrusted: return "untrusted";
    case abi::kMountTrusted: return "trusted";
    case abi::kMountProtected: return "protected";
  }
  return nullptr;
}

bool is_normalized_enclave_path(std::string_view p) {
  if (p.empty() || p[0] != '/' || p.size() > abi::kManifestMaxPath) return false;
  if (p == "/") return true;
  if (p.back() == '/') return false;
  size_t i = 1;
  while (i <= p.size()) {
    size_t j = p.find('/', i);
    if (j == std::string_view::npos) j = p.size();
    std::string_view part = p.substr(i, j - i);
    if (part.empty() || part == "." || part == "..") return false;
    if (part.find('\0') != std::string_view::npos) return false;
    i = j + 1;
  }
  return true;
}

Status normalize_and_check(MountManifest* m) {
  if (m->mounts.size() > abi::kManifestMaxMounts) {
    return invalid_argument(std::to_string(m->mounts.size()) + " [[mount]] tables; at most " +
                            std::to_string(abi::kManifestMaxMounts) + " are allowed");
  }
  if (m->files.size() > abi::kManifestMaxFiles) {
    return resource_error(std::to_string(m->files.size()) + " trusted files; at most " +
                          std::to_string(abi::kManifestMaxFiles) + " are allowed");
  }
  for (size_t i = 0; i < m->mounts.size(); ++i) {
    const MountSpec& s = m->mounts[i];
    const std::string at = "mount[" + std::to_string(i) + "]";
    if (!is_normalized_enclave_path(s.path)) {
      return invalid_argument(at + ".path = " + shown(s.path) +
                              " must be an absolute path without '.', '..', empty components or a "
                              "trailing '/', at most 4095 bytes");
    }
    if (s.host.empty() || s.host.size() > abi::kManifestMaxPath || s.host.find('\0') != std::string::npos) {
      return invalid_argument(at + ".host = " + shown(s.host) + " must be a non-empty host path of at most 4095 bytes");
    }
    if (!mount_type_name(s.type)) return invalid_argument(at + ".type is not trusted, protected or untrusted");
  }
  std::sort(m->mounts.begin(), m->mounts.end(), [](const MountSpec& a, const MountSpec& b) { return a.path < b.path; });
  for (size_t i = 1; i < m->mounts.size(); ++i) {
    if (m->mounts[i].path == m->mounts[i - 1].path) {
      return invalid_argument("two [[mount]] tables have path " + shown(m->mounts[i].path));
    }
  }
  std::sort(m->files.begin(), m->files.end(),
            [](const TrustedFileDigest& a, const TrustedFileDigest& b) { return a.path < b.path; });
  for (size_t i = 0; i < m->files.size(); ++i) {
    const TrustedFileDigest& f = m->files[i];
    if (!is_normalized_enclave_path(f.path)) return invalid_argument("trusted file path " + shown(f.path) + " is not normalised");
    if (i > 0 && f.path == m->files[i - 1].path) return invalid_argument("trusted file " + shown(f.path) + " is listed twice");
    // The file's mount is the longest mount path above it; it must be trusted.
    const MountSpec* owner = nullptr;
    for (const MountSpec& s : m->mounts) {
      if ((under(f.path, s.path) || f.path == s.path) && (!owner || s.path.size() > owner->path.size())) owner = &s;
    }
    if (!owner || owner->type != abi::kMountTrusted) {
      return invalid_argument("trusted file " + shown(f.path) + " is not under a trusted mount");
    }
  }
  return Status::ok_status();
}

std::vector<uint8_t> serialize_manifest(const MountManifest& m) {
  if (m.empty()) return {};
  std::string strings;
  auto add = [&](const std::string& s, uint8_t* off, uint8_t* len) {
    put32(off, static_cast<uint32_t>(strings.size()));  // relative for now
    put32(len, static_cast<uint32_t>(s.size()));
    strings += s;
  };
  const size_t tables = kHeader + m.mounts.size() * kMount + m.files.size() * kFile;
  std::vector<uint8_t> out(tables, 0);
  uint8_t* p = out.data() + kHeader;
  for (const MountSpec& s : m.mounts) {
    put32(p, s.type);
    add(s.path, p + 4, p + 8);
    add(s.host, p + 12, p + 16);
    p += kMount;
  }
  for (const TrustedFileDigest& f : m.files) {
    add(f.path, p, p + 4);
    put64(p + 8, f.size);
    memcpy(p + 16, f.sha256.data(), 32);
    p += kFile;
  }
  // Make string offsets absolute.
  p = out.data() + kHeader;
  for (size_t i = 0; i < m.mounts.size(); ++i, p += kMount) {
    put32(p + 4, get32(p + 4) + static_cast<uint32_t>(tables));
    put32(p + 12, get32(p + 12) + static_cast<uint32_t>(tables));
  }
  for (size_t i = 0; i < m.files.size(); ++i, p += kFile) put32(p, get32(p) + static_cast<uint32_t>(tables));
  out.insert(out.end(), strings.begin(), strings.end());
  memcpy(out.data(), abi::kManifestMagic, 8);
  put32(out.data() + 8, abi::kManifestVersion);
  put32(out.data() + 12, static_cast<uint32_t>(out.size()));
  put32(out.data() + 16, static_cast<uint32_t>(m.mounts.size()));
  put32(out.data() + 20, static_cast<uint32_t>(m.files.size()));
  put32(out.data() + 24, static_cast<uint32_t>(tables));
  put32(out.data() + 28, static_cast<uint32_t>(strings.size()));
  return out;
}

Result<MountManifest> deserialize_manifest(std::span<const uint8_t> b) {
  MountManifest m;
  if (b.empty()) return m;
  if (b.size() < kHeader) return corrupt("mount manifest: " + std::to_string(b.size()) + " bytes, shorter than its header");
  if (b.size() > abi::kManifestMaxSize) return corrupt("mount manifest: larger than 16 MiB");
  if (memcmp(b.data(), abi::kManifestMagic, 8) != 0) return corrupt("mount manifest: bad magic");
  if (get32(b.data() + 8) != abi::kManifestVersion) {
    return unsupported("mount manifest: version " + std::to_string(get32(b.data() + 8)) + " (expected " +
                       std::to_string(abi::kManifestVersion) + ")");
  }
  const uint64_t total = get32(b.data() + 12), nm = get32(b.data() + 16), nf = get32(b.data() + 20);
  const uint64_t so = get32(b.data() + 24), ss = get32(b.data() + 28);
  if (total != b.size()) return corrupt("mount manifest: size field says " + std::to_string(total) + ", section has " + std::to_string(b.size()));
  if (nm > abi::kManifestMaxMounts || nf > abi::kManifestMaxFiles) return corrupt("mount manifest: too many entries");
  const uint64_t tables = kHeader + nm * kMount + nf * kFile;
  if (so != tables || so + ss != total) return corrupt("mount manifest: tables and strings do not tile the section");
  auto str = [&](const uint8_t* off, const uint8_t* len, std::string* out) {
    const uint64_t o = get32(off), n = get32(len);
    if (o < so || n > abi::kManifestMaxPath || o + n > total) return false;
    out->assign(reinterpret_cast<const char*>(b.data() + o), n);
    return true;
  };
  const uint8_t* p = b.data() + kHeader;
  for (uint64_t i = 0; i < nm; ++i, p += kMount) {
    MountSpec s;
    s.type = static_cast<abi::MountType>(get32(p));
    if (!mount_type_name(s.type) || get32(p + 20) != 0 || !str(p + 4, p + 8, &s.path) || !str(p + 12, p + 16, &s.host)) {
      return corrupt("mount manifest: mount " + std::to_string(i) + " is malformed");
    }
    m.mounts.push_back(std::move(s));
  }
  for (uint64_t i = 0; i < nf; ++i, p += kFile) {
    TrustedFileDigest f;
    if (!str(p, p + 4, &f.path)) return corrupt("mount manifest: file " + std::to_string(i) + " is malformed");
    f.size = get64(p + 8);
    memcpy(f.sha256.data(), p + 16, 32);
    m.files.push_back(std::move(f));
  }
  MountManifest sorted = m;
  Status st = normalize_and_check(&sorted);
  if (!st.ok()) return corrupt("mount manifest: " + st.message());
  if (!(sorted == m)) return corrupt("mount manifest: entries are not sorted");
  return m;
}

Status hash_trusted_files(MountManifest* m) {
  namespace fs = std::filesystem;
  m->files.clear();
  for (const MountSpec& s : m->mounts) {
    if (s.type != abi::kMountTrusted) continue;
    const std::string what = "trusted mount " + shown(s.path) + " (host " + shown(s.host) + ")";
    std::error_code ec;
    const fs::file_status st = fs::status(s.host, ec);
    if (ec) return Status(Code::kNotFound, what + ": " + ec.message());
    auto add = [&](const fs::path& file, const std::string& enclave_path) -> Status {
      if (!is_normalized_enclave_path(enclave_path)) {
        return invalid_argument(what + ": file " + file.string() + " has no valid enclave path");
      }
      // A deeper mount shadows this part of the tree: the enclave never
      // sees the file through this mount (review defect).
      for (const MountSpec& other : m->mounts) {
        if (other.path.size() > s.path.size() && (enclave_path == other.path || under(enclave_path, other.path))) {
          return Status::ok_status();
        }
      }
      if (m->files.size() >= abi::kManifestMaxFiles) {
        return resource_error(what + ": more than " + std::to_string(abi::kManifestMaxFiles) + " trusted files");
      }
      TrustedFileDigest d;
      d.path = enclave_path;
      TM_ASSIGN_OR_RETURN(d.sha256, sha256_file(file, &d.size));
      m->files.push_back(std::move(d));
      return Status::ok_status();
    };
    if (fs::is_regular_file(st)) {
      TM_RETURN_IF_ERROR(add(s.host, s.path));
      continue;
    }
    if (!fs::is_directory(st)) return invalid_argument(what + ": not a directory or a regular file");
    fs::recursive_directory_iterator it(s.host, fs::directory_options::none, ec), end;
    if (ec) return Status(Code::kIo, what + ": " + ec.message());
    for (; it != end; it.increment(ec)) {
      if (ec) return Status(Code::kIo, what + ": " + ec.message());
      std::error_code fe;
      if (!it->is_regular_file(fe)) continue;  // directories, sockets, links to directories
      // Lexically: a symbolic link is hashed under its own name (review defect).
      const std::string rel = it->path().lexically_relative(s.host).generic_string();
      if (rel.empty() || rel.starts_with("..")) return invalid_argument(what + ": cannot name " + it->path().string());
      TM_RETURN_IF_ERROR(add(it->path(), (s.path == "/" ? "" : s.path) + "/" + rel));
    }
    if (ec) return Status(Code::kIo, what + ": " + ec.message());
  }
  return normalize_and_check(m);
}

}  // namespace teemate::image
