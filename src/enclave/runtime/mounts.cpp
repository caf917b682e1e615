/* The enclave's view of the file system: the measured mount manifest
 * (src/common/mount_manifest_abi.h, in the pages after the metadata page)
 * turns an enclave path into its mount, its host path and, under a trusted
 * mount, the file's expected size and SHA-256. Paths are normalised here,
 * lexically ("..", ".", "//"), before any mount is chosen, so no path can
 * climb out of its mount. The manifest is measured, yet every offset in it
 * is bounded before use. Never calls the host. */
#include <errno.h>
#include <string.h>

#include "mounts.h"
#include "runtime.h"

namespace teemate::trts {
namespace {

struct ManifestView {
  const uint8_t* base;
  const abi::ManifestHeader* header;
  const abi::ManifestMount* mounts;
  const abi::ManifestFile* files;
};

// The manifest, or false when the image has none (or a malformed one).
bool manifest(ManifestView* v) {
  const abi::EnclaveMeta* meta = globals().meta;
  if (!meta || meta->manifest_size < sizeof(abi::ManifestHeader) || meta->manifest_size > abi::kManifestMaxSize) {
    return false;
  }
  const uint64_t at = globals().base + meta->manifest_offset;
  if (!within_enclave(at, meta->manifest_size)) return false;
  const auto* h = reinterpret_cast<const abi::ManifestHeader*>(at);
  if (memcmp(h->magic, abi::kManifestMagic, 8) != 0 || h->version != abi::kManifestVersion ||
      h->total_size != meta->manifest_size || h->mount_count > abi::kManifestMaxMounts ||
      h->file_count > abi::kManifestMaxFiles) {
    return false;
  }
  const uint64_t tables = sizeof(abi::ManifestHeader) + uint64_t{h->mount_count} * sizeof(abi::ManifestMount) +
                          uint64_t{h->file_count} * sizeof(abi::ManifestFile);
  if (tables > h->total_size) return false;
  v->base = reinterpret_cast<const uint8_t*>(at);
  v->header = h;
  v->mounts = reinterpret_cast<const abi::ManifestMount*>(at + sizeof(abi::ManifestHeader));
  v->files = reinterpret_cast<const abi::ManifestFile*>(v->mounts + h->mount_count);
  return true;
}

bool text(const ManifestView& v, uint32_t off, uint32_t len, const char** s) {
  if (len > abi::kManifestMaxPath || uint64_t{off} + len > v.header->total_size) return false;
  *s = reinterpret_cast<const char*>(v.base + off);
  return true;
}

// `path` relative to "/": components appended to "/", "." dropped, ".."
// taking one off (never above "/"). False when the result is too long.
bool normalize(const char* path, char* out, size_t cap) {
  size_t n = 0;
  out[n++] = '/';
  const char* p = path;
  while (*p) {
    while (*p == '/') ++p;
    const char* start = p;
    while (*p && *p != '/') ++p;
    const size_t len = static_cast<size_t>(p - start);
    if (len == 0 || (len == 1 && start[0] == '.')) continue;
    if (len == 2 && start[0] == '.' && start[1] == '.') {
      while (n > 1 && out[n - 1] != '/') --n;
      if (n > 1) --n;  // the '/' before the dropped component
      continue;
    }
    if (n + (n > 1 ? 1 : 0) + len + 1 > cap) return false;
    if (n > 1) out[n++] = '/';
    memcpy(out + n, start, len);
    n += len;
  }
  out[n] = 0;
  return true;
}

int compare(const char* a, size_t an, const char* b, size_t bn) {
  const int c = memcmp(a, b, an < bn ? an : bn);
  if (c != 0) return c;
  return an < bn ? -1 : (an > bn ? 1 : 0);
}

}  // namespace

int resolve_path(const char* path, ResolvedPath* out) {
  if (!path) return EFAULT;
  if (!*path) return ENOENT;
  if (strnlen(path, sizeof out->enclave_path) >= sizeof out->enclave_path) return ENAMETOOLONG;
  if (!normalize(path, out->enclave_path, sizeof out->enclave_path)) return ENAMETOOLONG;
  const size_t given = strlen(path);
  out->trailing_slash = given > 0 && path[given - 1] == '/';
  ManifestView v;
  if (!manifest(&v)) return ENOENT;  // no mounts: no files
  const char* p = out->enclave_path;
  const size_t plen = strlen(p);
  const abi::ManifestMount* best = nullptr;
  size_t best_len = 0;
  for (uint32_t i = 0; i < v.header->mount_count; ++i) {
    const abi::ManifestMount& m = v.mounts[i];
    const char* mp;
    if (!text(v, m.path_off, m.path_len, &mp) || m.path_len == 0) continue;
    const bool root = m.path_len == 1 && mp[0] == '/';
    const bool covers = root || (plen >= m.path_len && memcmp(p, mp, m.path_len) == 0 &&
                                 (p[m.path_len] == 0 || p[m.path_len] == '/'));
    if (covers && (!best || m.path_len > best_len)) {
      best = &m;
      best_len = m.path_len;
    }
  }
  if (!best) return ENOENT;
  const char* host;
  if (!text(v, best->host_off, best->host_len, &host) || best->host_len == 0) return ENOENT;
  const bool root = best_len == 1;
  const char* rest = root ? (plen > 1 ? p : "") : p + best_len;  // "" or "/..."
  const size_t rest_len = strlen(rest);
  if (best->host_len + rest_len + 1 > sizeof out->host_path) return ENAMETOOLONG;
  memcpy(out->host_path, host, best->host_len);
  memcpy(out->host_path + best->host_len, rest, rest_len + 1);
  if (memchr(out->host_path, 0, best->host_len)) return ENOENT;  // an embedded NUL
  out->type = best->type;
  out->at_mount_root = rest_len == 0;
  out->trusted = nullptr;
  if (best->type == abi::kMountTrusted) {
    uint32_t lo = 0, hi = v.header->file_count;
    while (lo < hi) {
      const uint32_t mid = lo + (hi - lo) / 2;
      const abi::ManifestFile& f = v.files[mid];
      const char* fp;
      if (!text(v, f.path_off, f.path_len, &fp)) return ENOENT;
      const int c = compare(fp, f.path_len, p, plen);
      if (c == 0) {
        out->trusted = &f;
        break;
      }
      if (c < 0) lo = mid + 1;
      else hi = mid;
    }
  }
  return 0;
}

}  // namespace teemate::trts
