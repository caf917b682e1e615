// kvstore: the key-value store's command line. Loads the enclave for itself,
// or (--shared) attaches to the warm one teemated keeps, so that any number
// of processes use one table at once. Calls go through the typed proxies
// generated from kvstore.edl.
//
//   kvstore [--shared] IMAGE put KEY VALUE | get KEY | del KEY | fill PREFIX N
//                            | stats THREADS | save
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kvstore_u.h"
#include "teemate/enclave.h"

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: kvstore [--shared] IMAGE COMMAND\n"
               "  put KEY VALUE   store VALUE under KEY\n"
               "  get KEY         print the value (exit 1 if absent)\n"
               "  del KEY         remove KEY\n"
               "  fill PREFIX N   store PREFIX0..PREFIX(N-1) = value-PREFIXi\n"
               "  stats THREADS   entries and checksum, computed by THREADS enclave threads\n"
               "  save            write the table to the enclave's protected file /data/kv.db\n"
               "--shared attaches to the enclave teemated keeps warm ($TEEMATE_SOCKET);\n"
               "without it the process loads an enclave of its own.\n");
  return 2;
}

int failed(const char* what, const teemate::Status& st) {
  std::fprintf(stderr, "kvstore: %s: %s\n", what, st.to_string().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  const bool shared = argc > 1 && std::strcmp(argv[1], "--shared") == 0;
  if (shared) ++i;
  if (argc - i < 2) return usage();
  const std::string image = argv[i++];
  const std::string cmd = argv[i++];
  std::vector<std::string> args(argv + i, argv + argc);

  teemate::Result<std::unique_ptr<teemate::Enclave>> e = teemate::Status(teemate::Code::kInternal, "unset");
  if (shared) {
    teemate::AttachOptions o;
    o.image = image;
    o.tcs = 4;  // the caller's thread and up to three enclave threads for stats
    o.client_name = "kvstore " + cmd;
    e = teemate::Enclave::attach(o);
  } else {
    e = teemate::Enclave::load(image);
  }
  if (!e.ok()) return failed(shared ? "attach" : "load", e.status());
  teemate::Enclave& enclave = **e;
  int ret = 0;

  if (cmd == "put" && args.size() == 2) {
    teemate::Status st = kv_put(enclave, &ret, args[0].c_str(), reinterpret_cast<const uint8_t*>(args[1].data()),
                                args[1].size());
    if (!st.ok()) return failed("put", st);
    std::printf("ok\n");
    return 0;
  }
  if (cmd == "get" && args.size() == 1) {
    std::vector<uint8_t> value(64 * 1024);
    uint64_t len = 0;
    teemate::Status st = kv_get(enclave, &ret, args[0].c_str(), value.data(), value.size(), &len);
    if (!st.ok()) return failed("get", st);
    if (ret != 1) {
      std::printf("(absent)\n");
      return 1;
    }
    std::printf("%.*s\n", static_cast<int>(len), reinterpret_cast<const char*>(value.data()));
    return 0;
  }
  if (cmd == "del" && args.size() == 1) {
    teemate::Status st = kv_del(enclave, &ret, args[0].c_str());
    if (!st.ok()) return failed("del", st);
    std::printf("%s\n", ret == 1 ? "deleted" : "(absent)");
    return 0;
  }
  if (cmd == "fill" && args.size() == 2) {
    const unsigned long n = std::strtoul(args[1].c_str(), nullptr, 10);
    for (unsigned long k = 0; k < n; ++k) {
      const std::string key = args[0] + std::to_string(k), value = "value-" + key;
      teemate::Status st =
          kv_put(enclave, &ret, key.c_str(), reinterpret_cast<const uint8_t*>(value.data()), value.size());
      if (!st.ok()) return failed("fill", st);
    }
    std::printf("filled %lu\n", n);
    return 0;
  }
  if (cmd == "stats" && args.size() == 1) {
    uint64_t entries = 0, checksum = 0;
    teemate::Status st =
        kv_stats(enclave, &ret, static_cast<uint32_t>(std::strtoul(args[0].c_str(), nullptr, 10)), &entries, &checksum);
    if (!st.ok()) return failed("stats", st);
    std::printf("%llu entries, checksum %016llx\n", static_cast<unsigned long long>(entries),
                static_cast<unsigned long long>(checksum));
    return 0;
  }
  if (cmd == "save" && args.empty()) {
    uint64_t bytes = 0;
    teemate::Status st = kv_save(enclave, &ret, &bytes);
    if (!st.ok()) return failed("save", st);
    std::printf("saved %llu bytes\n", static_cast<unsigned long long>(bytes));
    return 0;
  }
  return usage();
}
