/* ECALL ids of the standalone example, shared by enclave.c and host.cpp. */
#ifndef STANDALONE_IDS_H_
#define STANDALONE_IDS_H_

#define STANDALONE_ECALL_GREET 0x100     /* bufs[0] in: a name; bufs[1] out: "hello, NAME" */
#define STANDALONE_ECALL_REFUSE 0x101    /* always fails with application error 42 */
#define STANDALONE_REFUSE_CODE 42

#endif
