// The standalone example's host program: loads the enclave through
// libteemate.so (TeeMate::host), calls its ECALLs and its main, and prints
// "host ok" when every answer is the expected one. Exit status 1 otherwise.
#include <cstdio>
#include <string>
#include <vector>

#include "ids.h"
#include "teemate/enclave.h"

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

  auto rc = enclave->run_main({});  // argv[0] is the image name
  if (!rc.ok() || *rc != 0) {
    std::fprintf(stderr, "main: %s\n", rc.ok() ? "nonzero exit" : rc.status().to_string().c_str());
    return 1;
  }
  std::printf("host ok (libteemate %s)\n", teemate::version());
  return 0;
}
