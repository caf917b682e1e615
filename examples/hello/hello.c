/* hello: the smallest TeeMate enclave program. Its main() runs inside the
 * enclave; printf reaches the host's stdout through the runtime's write
 * OCALL. Run it with `teemate enclave run build/enclaves/hello.tme -- a b`. */
#include <stdio.h>
#include <string.h>

int main(int argc, char** argv) {
  printf("Hello from inside the enclave!\n");
  for (int i = 1; i < argc; ++i) printf("  argv[%d] = %s\n", i, argv[i]);
  if (argc > 1 && strcmp(argv[1], "fail") == 0) return 3;
  return 0;
}
