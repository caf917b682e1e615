/* Single-character output for enclave programs: putchar, putc, fputc and
 * their _unlocked forms, through fwrite (and so the runtime's stdio). GCC
 * turns printf("\n") into putchar, and musl's own putchar reaches a futex
 * system call, which the packer refuses. No system call instruction here. */
#include <stdio.h>

extern "C" {

int fputc(int c, FILE* f) {
  const unsigned char ch = static_cast<unsigned char>(c);
  return fwrite(&ch, 1, 1, f) == 1 ? ch : EOF;
}
int putc(int c, FILE* f) { return fputc(c, f); }
int putchar(int c) { return fputc(c, stdout); }
int fputc_unlocked(int c, FILE* f) { return fputc(c, f); }
int putc_unlocked(int c, FILE* f) { return fputc(c, f); }
int putchar_unlocked(int c) { return fputc(c, stdout); }

}  // extern "C"
