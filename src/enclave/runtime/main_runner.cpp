/* Runs an enclave program's main(argc, argv) for the RunMain ECALL, with
 * exit() returning to here. The argument blob is NUL-separated strings
 * already copied into the enclave. Never reads host memory. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

extern "C" int main(int argc, char** argv) __attribute__((weak));
extern "C" void teemate_flush_stdio(void);

namespace teemate::trts {
namespace {
struct MainFrame {
  jmp_buf exit_jmp;
  int exit_code;
};
// Calls main with exit() wired to longjmp back here.
__attribute__((noinline)) int call_main(int argc, char** argv) {
  MainFrame frame{};
  ThreadData* td = current_td();
  void* saved = td->main_frame;
  td->main_frame = &frame;
  if (setjmp(frame.exit_jmp) == 0) {
    frame.exit_code = main(argc, argv);
  }
  td->main_frame = saved;
  teemate_flush_stdio();
  return frame.exit_code;
}
}  // namespace

int run_main(const char* blob, size_t size, int* exit_code) {
  if (!main) return TM_ERR_UNKNOWN_CALL;
  if (size == 0 || blob[size - 1] != '\0') return TM_ERR_INVALID;
  int argc = 0;
  for (size_t i = 0; i < size; ++i) argc += blob[i] == '\0';
  char** argv = static_cast<char**>(calloc(static_cast<size_t>(argc) + 1, sizeof(char*)));
  if (!argv) return TM_ERR_NO_MEMORY;
  const char* p = blob;
  for (int i = 0; i < argc; ++i) {
    argv[i] = const_cast<char*>(p);
    p += strlen(p) + 1;
  }
  *exit_code = call_main(argc, argv);
  record_exit_status(*exit_code);
  free(argv);
  return TM_OK;
}

}  // namespace teemate::trts

extern "C" __attribute__((noreturn)) void exit(int code) {
  using namespace teemate::trts;
  ThreadData* td = current_td();
  auto* frame = static_cast<MainFrame*>(td->main_frame);
  if (!frame) tm_abort("exit() called outside main()");
  frame->exit_code = code;
  longjmp(frame->exit_jmp, 1);
}
extern "C" __attribute__((noreturn)) void _Exit(int code) { exit(code); }
