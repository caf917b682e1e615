/* Single-character stdio for enclave programs: putchar, putc, fputc, getc,
 * fgetc, getchar and their _unlocked forms, through fwrite and fread (and
 * so the runtime's stdio lock). GCC turns printf("\n") into putchar, and
 * musl's own single-character functions take the FILE lock inline and wake
 * waiters with a futex system call, which the packer refuses. No system
 * call instruction here. */
#include <stdio.h>

#undef getc_unlocked
#undef getc

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

int fgetc(FILE* f) {
  unsigned char ch;
  return fread(&ch, 1, 1, f) == 1 ? ch : EOF;
}
int getc(FILE* f) { return fgetc(f); }
int _IO_getc(FILE* f) { return fgetc(f); }
// Enclaves have no standard input (and musl's stdin would bring its
// system-call reader along).
int getchar(void) { return EOF; }
int fgetc_unlocked(FILE* f) { return fgetc(f); }
int getc_unlocked(FILE* f) { return fgetc(f); }
int getchar_unlocked(void) { return EOF; }

}  // extern "C"
