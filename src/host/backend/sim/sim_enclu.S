/* Host-side ENCLU sequences used with the sim backend, identical to what
 * runs on hardware: EENTER with an AEP that calls back into the runtime and
 * ERESUMEs at the same stack depth, and the signal entry stub that puts the
 * host's FS/GS bases back before any C code runs. Never touches TLS before
 * the bases are restored. */

/* EnterContext offsets (backend.h) */
#define CTX_TCS 0
#define CTX_RDI 8
#define CTX_RSI 16
#define CTX_OUT_RDI 24
#define CTX_OUT_RSI 32
#define CTX_FAULT 40
#define CTX_ON_AEX 48
#define CTX_RESUME 64
#define EXIT_EXCEPTION_HANDLED 3
#define EXIT_AEX 4
#define EXIT_ENCLU_FAULT 0x100

    .text
/* void teemate_enclu_enter(EnterContext* ctx) */
    .globl teemate_enclu_enter
    .hidden teemate_enclu_enter
    .type teemate_enclu_enter, @function
teemate_enclu_enter:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    push %rdi                       /* (%rsp) = ctx at every ENCLU below */
    /* EENTER, done in software as the vDSO's entry does it on hardware
     * (no #UD trap): teemate_sim_eenter checks and claims the TCS, records
     * URSP/URBP and the AEP, blocks asynchronous signals and returns the
     * SimTcs, or 0 with the fault vector in RDX. */
    mov %rdi, %r12
    mov CTX_TCS(%rdi), %rdi
    mov %rsp, %rsi
    mov %rbp, %rdx
    lea teemate_aep(%rip), %rcx
    call teemate_sim_eenter
    test %rax, %rax
    jnz 1f
    mov %rdx, %rax
    jmp teemate_enclu_fault
1:  mov %rax, %r13
    mov 16(%r13), %rdi              /* SimTcs.enclave_fs */
    mov 24(%r13), %rsi              /* SimTcs.enclave_gs */
    call teemate_sim_set_fsgs       /* no TLS from here until EEXIT */
    mov CTX_TCS(%r12), %rbx
    mov CTX_RSI(%r12), %rsi
    mov CTX_RDI(%r12), %rdi
    movl 36(%r13), %eax             /* SimTcs.cssa */
    mov 64(%r13), %r11              /* SimTcs.oentry_addr */
    xor %r12d, %r12d
    xor %r13d, %r13d
    lea teemate_enclu_eenter_insn(%rip), %rcx   /* where EEXIT returns */
    jmp *%r11
    /* EEXIT lands here with RSP/RBP as they were at EENTER. */
    .globl teemate_enclu_eenter_insn
    .hidden teemate_enclu_eenter_insn
teemate_enclu_eenter_insn:
    mov (%rsp), %r8
    mov %rdi, CTX_OUT_RDI(%r8)
    mov %rsi, CTX_OUT_RSI(%r8)
    /* A recovery entry: ERESUME right here, at the depth of the EENTER,
     * so that the resumed code exits to this very frame. */
    cmp $EXIT_EXCEPTION_HANDLED, %rdi
    jne .Lrestore
    cmpq $0, CTX_RESUME(%r8)
    je .Lrestore
    movq $0, CTX_RESUME(%r8)
    mov CTX_TCS(%r8), %rbx
    lea teemate_aep(%rip), %rcx
    mov $3, %eax                    /* ERESUME */
    enclu
    ud2
.Lrestore:
    pop %rdi
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* Asynchronous exit: RSP = URSP, RBP = URBP, RBX = TCS, RAX = 3. */
    .globl teemate_aep
    .hidden teemate_aep
teemate_aep:
    mov (%rsp), %rdi
    call *CTX_ON_AEX(%rdi)
    test %eax, %eax
    jnz .Labandon
    mov (%rsp), %r8
    mov CTX_TCS(%r8), %rbx
    lea teemate_aep(%rip), %rcx
    mov $3, %eax                    /* ERESUME */
    .globl teemate_enclu_eresume_insn
    .hidden teemate_enclu_eresume_insn
teemate_enclu_eresume_insn:
    enclu
    ud2
.Labandon:
    mov (%rsp), %r8
    movq $EXIT_AEX, CTX_OUT_RDI(%r8)
    movq $0, CTX_OUT_RSI(%r8)
    jmp .Lrestore

/* The emulated ENCLU faulted (#GP and friends): EAX = vector. */
    .globl teemate_enclu_fault
    .hidden teemate_enclu_fault
teemate_enclu_fault:
    mov (%rsp), %r8
    mov %rax, CTX_FAULT(%r8)
    movq $EXIT_ENCLU_FAULT, CTX_OUT_RDI(%r8)
    movq $0, CTX_OUT_RSI(%r8)
    jmp .Lrestore
    .size teemate_enclu_enter, .-teemate_enclu_enter

/* Signal entry for SIGILL/SIGSEGV/SIGBUS/SIGFPE/SIGTRAP:
 * (sig, info, uc). If the interrupted RIP lies in an enclave and GS holds
 * the thread-data address of one of its TCS, the thread was inside that
 * enclave: restore the host FS/GS first. The C handler returns
 * null or a {fs, gs} pair to load just before returning to the kernel. */
    .globl teemate_sim_signal_entry
    .hidden teemate_sim_signal_entry
    .type teemate_sim_signal_entry, @function
teemate_sim_signal_entry:
    push %rbp
    mov %rsp, %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx                       /* slot for the TCS record */
    mov 168(%rdx), %rdi             /* uc->uc_mcontext.gregs[REG_RIP] */
    rdgsbase %rsi
    call teemate_sim_tcs_for_context /* no TLS, no stack protector */
    test %rax, %rax
    jz 1f
    mov %rax, -32(%rbp)             /* keep the record across the call */
    mov 0(%rax), %rdi               /* SimTcs.host_fs */
    mov 8(%rax), %rsi               /* SimTcs.host_gs */
    call teemate_sim_set_fsgs
    mov -32(%rbp), %rax
1:  mov %rax, %rcx
    mov -24(%rbp), %rdx
    mov -16(%rbp), %rsi
    mov -8(%rbp), %rdi
    call teemate_sim_signal_handler
    test %rax, %rax
    jz 2f
    mov 8(%rax), %rsi
    mov 0(%rax), %rdi
    call teemate_sim_set_fsgs
2:  mov %rbp, %rsp
    pop %rbp
    ret
    .size teemate_sim_signal_entry, .-teemate_sim_signal_entry

/* void teemate_sim_set_fsgs(uint64_t fs, uint64_t gs): loads both bases
 * with arch_prctl, skipping GS when it already holds the value (RDGSBASE
 * reads reliably). WRFSBASE/WRGSBASE would be faster, but a kernel that has
 * not enabled FSGSBASE for itself does not preserve values written that way
 * across context switches (seen on our VMs); arch_prctl is always kept.
 * Setting GS is the dearer of the two (a selector reload as well), which
 * is why a host thread that does not use GS keeps the enclave's GS base
 * after EEXIT (see SimTcs::host_gs): re-entering the same TCS then sets
 * FS alone. */
    .globl teemate_sim_set_fsgs
    .hidden teemate_sim_set_fsgs
    .type teemate_sim_set_fsgs, @function
teemate_sim_set_fsgs:
    push %rsi
    mov %rdi, %rsi
    mov $0x1002, %edi               /* ARCH_SET_FS */
    mov $158, %eax                  /* SYS_arch_prctl */
    syscall
    pop %rsi
    test %rsi, %rsi                 /* 0: a host that does not use GS */
    jz 1f
    rdgsbase %rax
    cmp %rax, %rsi
    je 1f
    mov $0x1001, %edi               /* ARCH_SET_GS */
    mov $158, %eax
    syscall
1:  ret
    .size teemate_sim_set_fsgs, .-teemate_sim_set_fsgs

    .section .note.GNU-stack, "", @progbits
