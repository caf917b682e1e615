/* Protected files: the encrypted, authenticated format of `protected`
 * mounts (docs/enclave-files.md).
 *
 *   header (4096 bytes): magic "TMPROT01", version, key policy, ISVSVN,
 *     CPUSVN, key id, plaintext size, chunk count, generation, root IV and
 *     root tag, zeros.
 *   chunk i (at 4096 + i * 4124): IV (12) | AES-128-GCM ciphertext of
 *     plaintext bytes [4096 i, 4096 i + 4096), zero-padded (4096) | tag (16);
 *     AAD = key id | i. The key is EGETKEY(SEAL, MRSIGNER policy, the key id
 *     of the file), so every file has its own key.
 *   root tag: GMAC under the same key over header bytes [0, 88) |
 *     SHA-256(enclave path) | SHA-256(every chunk tag in order).
 *
 * So a flipped bit, a chunk moved within or between files, a truncated or
 * extended file, a header edit and a file renamed by the host are all EIO.
 * What the host can still do: replace a file by an older version of itself
 * (rollback), delete it, and see its name and size rounded up to 4 KiB.
 * Never writes plaintext or key bytes outside the enclave. */
#include "protected_file.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "keys.h"
#include "mbedtls/gcm.h"
#include "mbedtls/platform_util.h"
#include "mbedtls/sha256.h"
#include "posix_call.h"
#include "runtime.h"
#include "tm_posix_t.h"

namespace teemate::trts {
namespace {

constexpr uint8_t kMagic[8] = {'T', 'M', 'P', 'R', 'O', 'T', '0', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kChunk = 4096;
constexpr uint64_t kHeaderBytes = 4096;
constexpr uint64_t kIv = 12, kTag = 16;
constexpr uint64_t kRecord = kIv + kChunk + kTag;
constexpr uint64_t kMaxSize = uint64_t{1} << 32;  // plaintext bytes (held in enclave memory)
constexpr uint64_t kRecordsPerIo = kMaxIo / kRecord;

struct DiskHeader {
  uint8_t magic[8];
  uint32_t version;
  uint16_t key_policy;
  uint16_t isv_svn;
  uint8_t cpu_svn[16];
  uint8_t key_id[32];
  uint64_t plain_size;
  uint64_t chunk_count;
  uint64_t generation;
  uint8_t root_iv[12];
  uint8_t root_tag[16];
  uint8_t reserved[8];
};
static_assert(sizeof(DiskHeader) == 128);
constexpr size_t kAuthenticatedHeader = offsetof(DiskHeader, root_iv);
static_assert(kAuthenticatedHeader == 88);

uint64_t chunks_for(uint64_t size) { return (size + kChunk - 1) / kChunk; }

}  // namespace

struct ProtectedFile {
  DiskHeader h;
  uint8_t key[16];
  uint8_t path_hash[32];
  uint8_t* data;       // plaintext, `cap` bytes (a multiple of kChunk), zero beyond `size`
  uint64_t size, cap;
  uint8_t* tags;       // kTag per chunk: the tags on disk
  uint8_t* dirty;      // one byte per chunk
  uint64_t nslots;     // entries in tags/dirty
  uint64_t disk_chunks;
  bool header_dirty;
};

namespace {

int gcm(const ProtectedFile& f, int mode, const uint8_t* iv, const uint8_t* aad, size_t aad_len, const uint8_t* in,
        size_t len, uint8_t* out, uint8_t* tag) {
  mbedtls_gcm_context ctx;
  mbedtls_gcm_init(&ctx);
  int rc = mbedtls_gcm_setkey(&ctx, MBEDTLS_CIPHER_ID_AES, f.key, 128);
  if (rc == 0 && mode == MBEDTLS_GCM_ENCRYPT) {
    rc = mbedtls_gcm_crypt_and_tag(&ctx, MBEDTLS_GCM_ENCRYPT, len, iv, kIv, aad, aad_len, in, out, kTag, tag);
  } else if (rc == 0) {
    rc = mbedtls_gcm_auth_decrypt(&ctx, len, iv, kIv, aad, aad_len, tag, kTag, in, out);
  }
  mbedtls_gcm_free(&ctx);
  return rc;
}

void chunk_aad(const ProtectedFile& f, uint64_t index, uint8_t out[40]) {
  memcpy(out, f.h.key_id, 32);
  memcpy(out + 32, &index, 8);
}

// The root's AAD: authenticated header bytes | path hash | hash of the tags.
void root_aad(const ProtectedFile& f, uint64_t nchunks, uint8_t out[kAuthenticatedHeader + 64]) {
  memcpy(out, &f.h, kAuthenticatedHeader);
  memcpy(out + kAuthenticatedHeader, f.path_hash, 32);
  mbedtls_sha256_ret(f.tags, nchunks * kTag, out + kAuthenticatedHeader + 32, 0);
}

// Room for `size` plaintext bytes and their chunk slots; new bytes are zero.
int reserve(ProtectedFile* f, uint64_t size) {
  if (size > kMaxSize) return EFBIG;
  const uint64_t need = chunks_for(size) * kChunk;
  if (need > f->cap) {
    uint64_t cap = f->cap ? f->cap : kChunk;
    while (cap < need) cap *= 2;
    auto* grown = static_cast<uint8_t*>(calloc(1, cap));
    if (!grown) return ENOMEM;
    if (f->data) {
      memcpy(grown, f->data, f->cap);
      mbedtls_platform_zeroize(f->data, f->cap);
      free(f->data);
    }
    f->data = grown;
    f->cap = cap;
  }
  const uint64_t slots = chunks_for(size);
  if (slots > f->nslots) {
    uint64_t n = f->nslots ? f->nslots : 1;
    while (n < slots) n *= 2;
    auto* tags = static_cast<uint8_t*>(calloc(n, kTag));
    auto* dirty = static_cast<uint8_t*>(calloc(n, 1));
    if (!tags || !dirty) {
      free(tags);
      free(dirty);
      return ENOMEM;
    }
    if (f->tags) memcpy(tags, f->tags, f->nslots * kTag);
    if (f->dirty) memcpy(dirty, f->dirty, f->nslots);
    free(f->tags);
    free(f->dirty);
    f->tags = tags;
    f->dirty = dirty;
    f->nslots = n;
  }
  return 0;
}

void mark(ProtectedFile* f, uint64_t from, uint64_t to) {  // bytes [from, to)
  if (to <= from) return;
  for (uint64_t c = from / kChunk; c <= (to - 1) / kChunk; ++c) f->dirty[c] = 1;
}

int read_exact(int fd, uint8_t* buf, uint64_t len, uint64_t at) {
  uint64_t got = 0;
  while (got < len) {
    const uint64_t n = len - got < kMaxIo ? len - got : kMaxIo;
    const long long r = host_call(
        [&](int64_t* res) { return tm_pread(res, fd, buf + got, n, static_cast<int64_t>(at + got)); },
        static_cast<int64_t>(n));
    if (r < 0) return errno;
    if (r == 0) return EIO;  // shorter than its header says
    got += static_cast<uint64_t>(r);
  }
  return 0;
}

int write_exact(int fd, const uint8_t* buf, uint64_t len, uint64_t at) {
  uint64_t done = 0;
  while (done < len) {
    const uint64_t n = len - done < kMaxIo ? len - done : kMaxIo;
    const long long w = host_call(
        [&](int64_t* res) { return tm_pwrite(res, fd, buf + done, n, static_cast<int64_t>(at + done)); },
        static_cast<int64_t>(n));
    if (w < 0) return errno;
    if (w == 0) return EIO;
    done += static_cast<uint64_t>(w);
  }
  return 0;
}

int derive_key(ProtectedFile* f) {
  return seal_key(f->h.key_policy, f->h.isv_svn, f->h.cpu_svn, f->h.key_id, f->key) == TM_OK ? 0 : EIO;
}

int load(ProtectedFile* f, int fd, uint64_t host_size) {
  uint8_t page[kHeaderBytes];
  int e = read_exact(fd, page, kHeaderBytes, 0);
  if (e) return e == EIO ? EIO : e;
  memcpy(&f->h, page, sizeof f->h);
  for (size_t i = sizeof f->h; i < kHeaderBytes; ++i) {
    if (page[i]) return EIO;
  }
  const DiskHeader& h = f->h;
  static const uint8_t kZero[8] = {};
  if (memcmp(h.magic, kMagic, 8) != 0 || h.version != kVersion || h.key_policy != TM_SEAL_MRSIGNER ||
      memcmp(h.reserved, kZero, 8) != 0 || h.plain_size > kMaxSize || h.chunk_count != chunks_for(h.plain_size) ||
      host_size != kHeaderBytes + h.chunk_count * kRecord) {
    return EIO;
  }
  if (derive_key(f)) return EIO;
  if ((e = reserve(f, h.plain_size))) return e;
  auto* buf = static_cast<uint8_t*>(malloc(kRecordsPerIo * kRecord));
  if (!buf) return ENOMEM;
  e = 0;
  for (uint64_t first = 0; first < h.chunk_count && !e; first += kRecordsPerIo) {
    const uint64_t n = h.chunk_count - first < kRecordsPerIo ? h.chunk_count - first : kRecordsPerIo;
    e = read_exact(fd, buf, n * kRecord, kHeaderBytes + first * kRecord);
    for (uint64_t k = 0; k < n && !e; ++k) {
      const uint8_t* rec = buf + k * kRecord;
      uint8_t aad[40];
      chunk_aad(*f, first + k, aad);
      uint8_t* tag = f->tags + (first + k) * kTag;
      memcpy(tag, rec + kIv + kChunk, kTag);
      if (gcm(*f, MBEDTLS_GCM_DECRYPT, rec, aad, sizeof aad, rec + kIv, kChunk, f->data + (first + k) * kChunk,
              tag) != 0) {
        e = EIO;
      }
    }
  }
  free(buf);
  if (e) return e;
  // Bytes past the end in the last chunk are zero padding: anything else
  // was not written by us.
  for (uint64_t i = h.plain_size; i < h.chunk_count * kChunk; ++i) {
    if (f->data[i]) return EIO;
  }
  uint8_t aad[kAuthenticatedHeader + 64];
  root_aad(*f, h.chunk_count, aad);
  uint8_t root_tag[kTag];
  memcpy(root_tag, h.root_tag, kTag);
  if (gcm(*f, MBEDTLS_GCM_DECRYPT, h.root_iv, aad, sizeof aad, nullptr, 0, nullptr, root_tag) != 0) return EIO;
  f->size = h.plain_size;
  f->disk_chunks = h.chunk_count;
  return 0;
}

int fresh(ProtectedFile* f) {
  memcpy(f->h.magic, kMagic, 8);
  f->h.version = kVersion;
  f->h.key_policy = TM_SEAL_MRSIGNER;
  sgx::Report self;
  self_report(&self);
  f->h.isv_svn = self.isv_svn;
  memcpy(f->h.cpu_svn, self.cpu_svn, sizeof f->h.cpu_svn);
  if (tm_random(f->h.key_id, sizeof f->h.key_id) != TM_OK) return EIO;
  if (derive_key(f)) return EIO;
  f->header_dirty = true;
  return 0;
}

}  // namespace

int pf_open(int host_fd, const char* enclave_path, bool may_create, bool truncate, ProtectedFile** out) {
  uint8_t st[144];
  if (host_call([&](int64_t* res) { return tm_fstat(res, host_fd, st, sizeof st); }, 0) < 0) return errno;
  int64_t host_size;
  memcpy(&host_size, st + 48, 8);  // struct stat.st_size on x86-64
  if (host_size < 0) return EIO;
  auto* f = static_cast<ProtectedFile*>(calloc(1, sizeof(ProtectedFile)));
  if (!f) return ENOMEM;
  mbedtls_sha256_ret(reinterpret_cast<const uint8_t*>(enclave_path), strlen(enclave_path), f->path_hash, 0);
  int e;
  if (host_size == 0) e = may_create ? fresh(f) : EIO;  // a file we wrote always has a header
  else e = load(f, host_fd, static_cast<uint64_t>(host_size));
  if (!e && truncate) e = pf_truncate(f, 0);
  if (e) {
    pf_free(f);
    return e;
  }
  *out = f;
  return 0;
}

uint64_t pf_size(const ProtectedFile* f) { return f->size; }

size_t pf_read(const ProtectedFile* f, void* buf, size_t len, uint64_t at) {
  if (at >= f->size) return 0;
  const uint64_t n = f->size - at < len ? f->size - at : len;
  memcpy(buf, f->data + at, n);
  return n;
}

int pf_write(ProtectedFile* f, const void* buf, size_t len, uint64_t at) {
  if (len == 0) return 0;
  uint64_t end;
  if (__builtin_add_overflow(at, uint64_t{len}, &end) || end > kMaxSize) return EFBIG;
  if (int e = reserve(f, end)) return e;
  memcpy(f->data + at, buf, len);
  mark(f, at > f->size ? f->size : at, end);  // the gap of zeros too
  if (end > f->size) {
    f->size = end;
    f->header_dirty = true;
  }
  return 0;
}

int pf_truncate(ProtectedFile* f, uint64_t size) {
  if (size > kMaxSize) return EFBIG;
  if (size < f->size) {
    memset(f->data + size, 0, f->size - size);
    if (size % kChunk) f->dirty[size / kChunk] = 1;
  } else if (size > f->size) {
    if (int e = reserve(f, size)) return e;
    mark(f, f->size, size);
  }
  if (size != f->size) f->header_dirty = true;
  f->size = size;
  return 0;
}

int pf_rebind(ProtectedFile* f, const char* enclave_path) {
  mbedtls_sha256_ret(reinterpret_cast<const uint8_t*>(enclave_path), strlen(enclave_path), f->path_hash, 0);
  f->header_dirty = true;
  return 0;
}

int pf_flush(ProtectedFile* f, int host_fd) {
  const uint64_t n = chunks_for(f->size);
  bool any = f->header_dirty || n != f->disk_chunks;
  for (uint64_t c = 0; c < n && !any; ++c) any = f->dirty[c];
  if (!any) return 0;
  auto* buf = static_cast<uint8_t*>(malloc(kRecordsPerIo * kRecord));
  if (!buf) return ENOMEM;
  int e = 0;
  // Runs of changed chunks, at most kRecordsPerIo per host write.
  for (uint64_t c = 0; c < n && !e;) {
    if (!f->dirty[c] && c < f->disk_chunks) {
      ++c;
      continue;
    }
    uint64_t k = 0;
    while (c + k < n && k < kRecordsPerIo && (f->dirty[c + k] || c + k >= f->disk_chunks)) {
      uint8_t* rec = buf + k * kRecord;
      uint8_t aad[40];
      chunk_aad(*f, c + k, aad);
      if (tm_random(rec, kIv) != TM_OK ||
          gcm(*f, MBEDTLS_GCM_ENCRYPT, rec, aad, sizeof aad, f->data + (c + k) * kChunk, kChunk, rec + kIv,
              rec + kIv + kChunk) != 0) {
        e = EIO;
        break;
      }
      memcpy(f->tags + (c + k) * kTag, rec + kIv + kChunk, kTag);
      ++k;
    }
    if (!e) e = write_exact(host_fd, buf, k * kRecord, kHeaderBytes + c * kRecord);
    for (uint64_t j = 0; j < k && !e; ++j) f->dirty[c + j] = 0;
    c += k;
  }
  free(buf);
  if (e) return e;
  if (n < f->disk_chunks) {
    const int64_t len = static_cast<int64_t>(kHeaderBytes + n * kRecord);
    if (host_call([&](int64_t* res) { return tm_ftruncate(res, host_fd, len); }, 0) < 0) return errno;
  }
  f->h.plain_size = f->size;
  f->h.chunk_count = n;
  f->h.generation += 1;
  if (tm_random(f->h.root_iv, kIv) != TM_OK) return EIO;
  uint8_t aad[kAuthenticatedHeader + 64];
  root_aad(*f, n, aad);
  if (gcm(*f, MBEDTLS_GCM_ENCRYPT, f->h.root_iv, aad, sizeof aad, nullptr, 0, nullptr, f->h.root_tag) != 0) {
    return EIO;
  }
  uint8_t page[kHeaderBytes] = {};
  memcpy(page, &f->h, sizeof f->h);
  if ((e = write_exact(host_fd, page, kHeaderBytes, 0))) return e;
  f->disk_chunks = n;
  f->header_dirty = false;
  return 0;
}

void pf_free(ProtectedFile* f) {
  if (!f) return;
  if (f->data) mbedtls_platform_zeroize(f->data, f->cap);
  mbedtls_platform_zeroize(f->key, sizeof f->key);
  free(f->data);
  free(f->tags);
  free(f->dirty);
  free(f);
}

}  // namespace teemate::trts
