/* The standalone example's enclave program: main() for `teemate enclave
 * run`, one ECALL that answers with a greeting and one that fails with an
 * application error. Uses only the installed SDK's trusted headers. */
#include <stdio.h>
#include <string.h>

#include "ids.h"
#include "teemate/trusted/runtime.h"

static int greet(tm_call* c) {
  if (c->nbufs != 2 || c->bufs[0].direction != TM_BUF_IN || c->bufs[1].direction != TM_BUF_OUT) {
    return TM_ERR_INVALID;
  }
  int n = snprintf((char*)c->bufs[1].data, c->bufs[1].size, "hello, %.*s", (int)c->bufs[0].size,
                   (const char*)c->bufs[0].data);
  if (n < 0 || (size_t)n >= c->bufs[1].size) {
    return tm_app_errorf(1, "answer needs %d bytes, buffer has %zu", n + 1, c->bufs[1].size);
  }
  c->bufs[1].out_size = (size_t)n;
  return TM_OK;
}
TM_ECALL(STANDALONE_ECALL_GREET, greet);

static int refuse(tm_call* c) {
  (void)c;
  return tm_app_error(STANDALONE_REFUSE_CODE, "refused on purpose");
}
TM_ECALL(STANDALONE_ECALL_REFUSE, refuse);

int main(int argc, char** argv) {
  (void)argv;
  printf("standalone ok\n");
  return argc > 1 ? 1 : 0;
}
