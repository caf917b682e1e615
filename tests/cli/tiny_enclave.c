/* A minimal freestanding enclave program for the CLI tests: a static PIE with
 * an `entry` function, a little code, data that needs R_X86_64_RELATIVE
 * relocations and a marker string the tamper test flips. Never calls libc or
 * makes a system call. */
static int counter;
static const char marker[] = "TEEMATE-TAMPER-ME";
const char *volatile marker_ptr = marker;
int *volatile counter_ptr = &counter;

__attribute__((noinline)) int work(int x) {
  *counter_ptr += x;
  return *counter_ptr * 3 + marker_ptr[1];
}

void entry(void) {
  for (int i = 0; i < 10; i++) work(i);
  for (;;) __asm__ volatile("ud2");
}
