/* Enclave entry and exit: the code at OENTRY and the EEXIT sequence. Runs
 * with the host's RSP on entry and must switch to the enclave stack before
 * touching any stack memory. Registers at EENTER: RAX = CSSA, RBX = TCS,
 * RCX = host return address, RDI = entry reason, RSI = CallFrame (host).
 * Never pushes onto, or reads from, the host stack. */
#include "thread_data.h"

#define ENTRY_OCALL_RETURN 2
#define EXIT_RETURN 1
#define EXIT_OCALL 2
#define EXIT_EXCEPTION_HANDLED 3
#define ERR_STATE 9

    .text
    .globl teemate_enclave_entry
    .type teemate_enclave_entry, @function
teemate_enclave_entry:
    mov %rsp, %gs:TD_HOST_RSP
    mov %rbp, %gs:TD_HOST_RBP
    mov %rcx, %gs:TD_HOST_RET
    cld
    test %rax, %rax
    jnz .Lexception_entry
    cmp $ENTRY_OCALL_RETURN, %rdi
    je .Locall_return

    /* A new ECALL runs below any pending OCALL frame, else at the stack top
     * (TD_STACK_GAP below this thread-data page). */
    mov %gs:TD_OCALL_SP, %r8
    test %r8, %r8
    jz 1f
    lea -128(%r8), %rsp
    and $-16, %rsp
    jmp 2f
1:  rdgsbase %rsp
    sub $TD_STACK_GAP, %rsp
2:  call .Lpush_entry_frame
    xor %ebp, %ebp
    mov %rbx, %rdx
    call teemate_ecall_entry
    mov %rax, %rsi
    mov $EXIT_RETURN, %edi
    jmp .Lpop_entry_frame_and_exit

.Locall_return:
    mov %gs:TD_OCALL_SP, %r8
    test %r8, %r8
    jz .Lbad_state
    /* The resumed ECALL exits later to the host stack of this entry. */
    mov %gs:TD_ENTRY_FRAME, %r9
    mov %gs:TD_HOST_RSP, %r10
    mov %r10, 0(%r9)
    mov %gs:TD_HOST_RBP, %r10
    mov %r10, 8(%r9)
    mov %gs:TD_HOST_RET, %r10
    mov %r10, 16(%r9)
    mov %r8, %rsp
    pop %r8
    mov %r8, %gs:TD_OCALL_SP
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    xor %eax, %eax
    ret

.Lbad_state:
    rdgsbase %rsp
    sub $TD_STACK_GAP, %rsp
    mov $ERR_STATE, %esi
    mov $EXIT_RETURN, %edi
    jmp teemate_eexit

.Lexception_entry:
    /* CSSA > 0: the state of the interrupted code is in SSA frame CSSA-1. */
    cmpq $0, %gs:TD_INITIALIZED
    jne 5f
    /* The thread that held this TCS died before the runtime set the TCS up
     * (between EENTER and its first instructions): set it up now, on the
     * stack a first ECALL would use, so that recovery can run. */
    rdgsbase %rsp
    sub $TD_STACK_GAP, %rsp
    push %rax
    push %rdi
    push %rsi
    push %rbx
    mov %rbx, %rdi
    call teemate_late_thread_init
    pop %rbx
    pop %rsi
    pop %rdi
    test %rax, %rax
    pop %rax
    jz .Lbad_state
5:  mov %rax, %r9
    dec %r9
    imul %gs:TD_SSA_FRAME_BYTES, %r9
    add %gs:TD_SSA_GPR0, %r9
    mov 32(%r9), %r8                /* GPRSGX.RSP of the interrupted code */
    mov %gs:TD_STACK_LIMIT, %r10
    add $8192, %r10
    cmp %r10, %r8
    jb 3f
    cmp %gs:TD_STACK_TOP, %r8
    ja 3f
    lea -128(%r8), %rsp             /* keep the interrupted red zone intact */
    and $-16, %rsp
    jmp 4f
3:  mov %gs:TD_EXC_STACK, %rsp      /* stack overflow or a wild RSP */
    and $-16, %rsp
4:  call .Lpush_entry_frame
    xor %ebp, %ebp
    mov %rsi, %rdx                  /* CallFrame (recover: the control token) */
    mov %rdi, %rsi                  /* entry reason: exception or recover */
    mov %rax, %rdi
    call teemate_exception_entry
    mov %rax, %rsi                  /* 0, or kErrDenied */
    mov $EXIT_EXCEPTION_HANDLED, %edi
    jmp .Lpop_entry_frame_and_exit

/* Each entry level keeps the host's RSP/RBP/return address in a frame on
 * the enclave stack: {rsp, rbp, ret, previous frame}. An ECALL that was
 * interrupted and ERESUMEd, or that made OCALLs, exits with its own. Called
 * (not jumped to) so that the frame lands below the return address; keeps
 * RSP 16-byte aligned for the C call that follows. */
.Lpush_entry_frame:
    pop %r11                        /* return address */
    pushq %gs:TD_ENTRY_FRAME
    pushq %gs:TD_HOST_RET
    pushq %gs:TD_HOST_RBP
    pushq %gs:TD_HOST_RSP
    mov %rsp, %gs:TD_ENTRY_FRAME
    jmp *%r11

.Lpop_entry_frame_and_exit:
    mov %gs:TD_ENTRY_FRAME, %rsp
    pop %r8
    mov %r8, %gs:TD_HOST_RSP
    pop %r8
    mov %r8, %gs:TD_HOST_RBP
    pop %r8
    mov %r8, %gs:TD_HOST_RET
    pop %r8
    mov %r8, %gs:TD_ENTRY_FRAME
    jmp teemate_eexit
    .size teemate_enclave_entry, .-teemate_enclave_entry

/* int teemate_do_ocall(uint64_t host_frame): leaves the enclave for an OCALL
 * and returns 0 when the host re-enters with ENTRY_OCALL_RETURN. */
    .globl teemate_do_ocall
    .type teemate_do_ocall, @function
teemate_do_ocall:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    pushq %gs:TD_OCALL_SP
    mov %rsp, %gs:TD_OCALL_SP
    /* Exit to the host stack of the ECALL this OCALL belongs to. */
    mov %gs:TD_ENTRY_FRAME, %r9
    mov 0(%r9), %r8
    mov %r8, %gs:TD_HOST_RSP
    mov 8(%r9), %r8
    mov %r8, %gs:TD_HOST_RBP
    mov 16(%r9), %r8
    mov %r8, %gs:TD_HOST_RET
    mov %rdi, %rsi
    mov $EXIT_OCALL, %edi
    jmp teemate_eexit
    .size teemate_do_ocall, .-teemate_do_ocall

/* noreturn teemate_eexit(reason, value): clears state and EEXITs to the
 * host's return address with the host's stack registers. */
    .globl teemate_eexit
    .type teemate_eexit, @function
teemate_eexit:
    pxor %xmm0, %xmm0
    pxor %xmm1, %xmm1
    pxor %xmm2, %xmm2
    pxor %xmm3, %xmm3
    pxor %xmm4, %xmm4
    pxor %xmm5, %xmm5
    pxor %xmm6, %xmm6
    pxor %xmm7, %xmm7
    pxor %xmm8, %xmm8
    pxor %xmm9, %xmm9
    pxor %xmm10, %xmm10
    pxor %xmm11, %xmm11
    pxor %xmm12, %xmm12
    pxor %xmm13, %xmm13
    pxor %xmm14, %xmm14
    pxor %xmm15, %xmm15
    xor %ecx, %ecx
    xor %edx, %edx
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    mov %gs:TD_HOST_RET, %rbx
    mov %gs:TD_HOST_RBP, %rbp
    mov %gs:TD_HOST_RSP, %rsp
    mov $4, %eax                    /* EEXIT */
    enclu
    ud2
    .size teemate_eexit, .-teemate_eexit

/* ERESUME lands here when the runtime abandons an ECALL after an unhandled
 * exception; the exception path set RSP to a safe stack. */
    .globl teemate_abort_stub
    .type teemate_abort_stub, @function
teemate_abort_stub:
    and $-16, %rsp
    call teemate_abort_current_ecall
    ud2
    .size teemate_abort_stub, .-teemate_abort_stub

/* ERESUME lands here after a recovery entry: the thread that held this TCS
 * is gone; forget its state and exit to the host that recovers it. */
    .globl teemate_reset_stub
    .type teemate_reset_stub, @function
teemate_reset_stub:
    and $-16, %rsp
    call teemate_reset_thread
    movq $0, %gs:TD_ENTRY_FRAME     /* no entry is in progress any more */
    xor %esi, %esi
    mov $EXIT_RETURN, %edi
    jmp teemate_eexit
    .size teemate_reset_stub, .-teemate_reset_stub

    .section .note.GNU-stack, "", @progbits
