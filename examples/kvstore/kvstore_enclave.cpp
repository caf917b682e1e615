// The key-value store inside the enclave. The table is a shared_map in
// shared enclave memory (teemate/trusted/shared_memory.h): every attached
// process sees the same entries, and they outlive the process that wrote
// them. One tm_mutex guards it (released by the runtime if its holder's
// process dies). The table is loaded from the protected file /data/kv.db
// at first use and written back by kv_save; kv_stats splits its work over
// pthreads. Treats every argument as hostile (the generated stubs have
// already copied and bounded them).
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <vector>

#include "kvstore_t.h"
#include "teemate/trusted/runtime.h"
#include "teemate/trusted/shared_memory.h"

namespace {

using Table = teemate::trusted::shared_map<teemate::trusted::shared_string, teemate::trusted::shared_string>;

constexpr size_t kMaxKey = 256;
constexpr uint64_t kMaxValue = 64 * 1024;
constexpr const char* kFile = "/data/kv.db";

tm_mutex g_lock = TM_MUTEX_INIT;
Table* g_table;  // shared memory, created at first use

bool read_all(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    const ssize_t r = read(fd, p, n);
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(int fd, const void* buf, size_t n) {
  auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

// The table, loaded from kFile the first time (under g_lock). Null and an
// application error when the file exists but cannot be read back.
Table* table() {
  if (g_table) return g_table;
  Table* t = teemate::trusted::shared_new<Table>();
  const int fd = open(kFile, O_RDONLY);
  if (fd >= 0) {
    uint32_t count = 0;
    bool ok = read_all(fd, &count, sizeof count);
    for (uint32_t i = 0; ok && i < count; ++i) {
      uint32_t kl = 0, vl = 0;
      ok = read_all(fd, &kl, 4) && kl > 0 && kl <= kMaxKey;
      teemate::trusted::shared_string k(ok ? kl : 0, '\0');
      ok = ok && read_all(fd, k.data(), kl) && read_all(fd, &vl, 4) && vl <= kMaxValue;
      teemate::trusted::shared_string v(ok ? vl : 0, '\0');
      ok = ok && read_all(fd, v.data(), vl);
      if (ok) (*t)[k] = v;
    }
    close(fd);
    if (!ok) {
      teemate::trusted::shared_delete(t);
      tm_app_errorf(500, "%s does not read back as a table", kFile);
      return nullptr;
    }
  } else if (errno != ENOENT) {
    teemate::trusted::shared_delete(t);
    tm_app_errorf(500, "%s: errno %d (a protected file that fails its checks is EIO)", kFile, errno);
    return nullptr;
  }
  g_table = t;
  return t;
}

bool valid_key(const char* key) {
  const size_t n = strnlen(key, kMaxKey + 1);
  return n > 0 && n <= kMaxKey;
}

struct Share {
  const Table* table;
  uint32_t part, parts;
  uint64_t sum;
};

uint64_t fnv(const teemate::trusted::shared_string& s, uint64_t h) {
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

void* sum_share(void* arg) {
  auto* s = static_cast<Share*>(arg);
  uint32_t i = 0;
  for (const auto& [k, v] : *s->table) {
    if (i++ % s->parts == s->part) s->sum += fnv(v, fnv(k, 0xcbf29ce484222325ull));
  }
  return nullptr;
}

}  // namespace

int kv_put(const char* key, const uint8_t* value, uint64_t len) {
  if (!valid_key(key) || len > kMaxValue) {
    return tm_app_errorf(400, "keys are 1 to %zu bytes, values at most %llu bytes", kMaxKey,
                         static_cast<unsigned long long>(kMaxValue));
  }
  tm_mutex_lock(&g_lock);
  Table* t = table();
  if (t) (*t)[teemate::trusted::shared_string(key)].assign(reinterpret_cast<const char*>(value), len);
  tm_mutex_unlock(&g_lock);
  return t ? TM_OK : TM_ERR_APP;
}

int kv_get(const char* key, uint8_t* value, uint64_t cap, uint64_t* len) {
  if (!valid_key(key)) return tm_app_errorf(400, "keys are 1 to %zu bytes", kMaxKey);
  tm_mutex_lock(&g_lock);
  Table* t = table();
  int found = 0;
  *len = 0;
  if (t) {
    auto it = t->find(teemate::trusted::shared_string(key));
    if (it != t->end()) {
      found = 1;
      *len = it->second.size();
      memcpy(value, it->second.data(), it->second.size() < cap ? it->second.size() : cap);
    }
  }
  tm_mutex_unlock(&g_lock);
  return t ? found : TM_ERR_APP;
}

int kv_del(const char* key) {
  if (!valid_key(key)) return tm_app_errorf(400, "keys are 1 to %zu bytes", kMaxKey);
  tm_mutex_lock(&g_lock);
  Table* t = table();
  const int erased = t ? static_cast<int>(t->erase(teemate::trusted::shared_string(key))) : 0;
  tm_mutex_unlock(&g_lock);
  return t ? erased : TM_ERR_APP;
}

int kv_stats(uint32_t threads, uint64_t* entries, uint64_t* checksum) {
  if (threads < 1 || threads > 8) return tm_app_errorf(400, "threads must be 1 to 8");
  tm_mutex_lock(&g_lock);
  Table* t = table();
  if (!t) {
    tm_mutex_unlock(&g_lock);
    return TM_ERR_APP;
  }
  std::vector<Share> shares(threads);
  std::vector<pthread_t> ids(threads);
  std::vector<bool> started(threads);
  for (uint32_t i = 0; i < threads; ++i) {
    shares[i] = Share{t, i, threads, 0};
    // Without a free TCS the share is summed on this thread instead.
    started[i] = i > 0 && pthread_create(&ids[i], nullptr, sum_share, &shares[i]) == 0;
    if (!started[i]) sum_share(&shares[i]);
  }
  uint64_t sum = 0;
  for (uint32_t i = 0; i < threads; ++i) {
    if (started[i]) pthread_join(ids[i], nullptr);
    sum += shares[i].sum;
  }
  *entries = t->size();
  *checksum = sum;
  tm_mutex_unlock(&g_lock);
  return TM_OK;
}

int kv_save(uint64_t* bytes) {
  tm_mutex_lock(&g_lock);
  Table* t = table();
  int rc = t ? TM_OK : TM_ERR_APP;
  *bytes = 0;
  if (t) {
    const int fd = open(kFile, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const uint32_t count = static_cast<uint32_t>(t->size());
    bool ok = fd >= 0 && write_all(fd, &count, 4);
    uint64_t n = 4;
    for (auto it = t->begin(); ok && it != t->end(); ++it) {
      const uint32_t kl = static_cast<uint32_t>(it->first.size()), vl = static_cast<uint32_t>(it->second.size());
      ok = write_all(fd, &kl, 4) && write_all(fd, it->first.data(), kl) && write_all(fd, &vl, 4) &&
           write_all(fd, it->second.data(), vl);
      n += 8 + kl + vl;
    }
    ok = ok && fsync(fd) == 0;
    if (fd >= 0 && close(fd) != 0) ok = false;
    if (!ok) rc = tm_app_errorf(500, "saving %s failed: errno %d", kFile, errno);
    else *bytes = n;
  }
  tm_mutex_unlock(&g_lock);
  return rc;
}

int main(void) { return 0; }
