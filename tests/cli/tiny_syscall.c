/* A program the packer must refuse: `__lock` makes a raw system call, as a
 * host libc's lock would. Used only to test the forbidden-instruction scan. */
__attribute__((noinline)) long __lock(long n) {
  long r;
  __asm__ volatile("syscall" : "=a"(r) : "a"(n) : "rcx", "r11", "memory");
  return r;
}

void entry(void) {
  __lock(39);
  for (;;) __asm__ volatile("ud2");
}
