// The standalone example's host program: loads the enclave through
// libteemate.so (TeeMate::host), calls its ECALLs and its main, and prints
// "host ok" when every answer is the expected one. Exit status 1 otherwise.
#include <cstdio>
#include <string>
#include <vector>

#include "ids.h"
#include "standalone_u.h"
#include "teemate/enclave.h"

namespace {
uint32_t g_progress = 0;
}

// The OCALL of standalone.edl, implemented by the host.
void host_progress(uint32_t done) { g_progress = done; }

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s IMAGE.tme\n", argv[0]);
    return 2;
  }
  auto loaded = teemate::Enclave::load(argv[1]);
  if (!loaded.ok()) {
    std::fprintf(stderr, "load: %s\n", loaded.status().to_string().c_str());
    return 1;
  }
  auto& enclave = *loaded;

  std::string name = "standalone";
  std::vector<uint8_t> answer(64);
  teemate::CallArgs greet;
  greet.in(name).out(answer);
  teemate::Status st = enclave->call(STANDALONE_ECALL_GREET, greet);
  std::string text(reinterpret_cast<const char*>(answer.data()), greet.buffer(1).out_size);
  if (!st.ok() || text != "hello, standalone") {
    std::fprintf(stderr, "greet: %s, answer '%s'\n", st.to_string().c_str(), text.c_str());
    return 1;
  }

  teemate::CallArgs refuse;
  st = enclave->call(STANDALONE_ECALL_REFUSE, refuse);
  if (st.code() != teemate::Code::kApplication || st.app_code() != STANDALONE_REFUSE_CODE) {
    std::fprintf(stderr, "refuse: expected application error %d, got %s\n", STANDALONE_REFUSE_CODE,
                 st.to_string().c_str());
    return 1;
  }

  // Typed: the generated proxy marshals, the generated handler checks.
  if (!standalone_register_ocalls(*enclave).ok()) return 1;
  const int32_t values[] = {40, 1, 1};
  int64_t total = 0;
  int ret = -1;
  st = sum(*enclave, &ret, values, 3, &total);
  if (!st.ok() || ret != 0 || total != 42 || g_progress != 3) {
    std::fprintf(stderr, "sum: %s, ret %d, total %lld, progress %u\n", st.to_string().c_str(), ret,
                 static_cast<long long>(total), g_progress);
    return 1;
  }

  auto rc = enclave->run_main({});  // argv[0] is the image name
  if (!rc.ok() || *rc != 0) {
    std::fprintf(stderr, "main: %s\n", rc.ok() ? "nonzero exit" : rc.status().to_string().c_str());
    return 1;
  }
  std::printf("host ok (libteemate %s)\n", teemate::version());
  return 0;
}
