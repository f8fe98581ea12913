/* prewarm-true: exits 0 and does nothing else. It is copied into every prewarm pod (through an
 * init container and an emptyDir) so that any image, even one without a shell or /bin/true
 * (distroless, scratch), has a command to "run" once its pull is done. Built static with no libc
 * start-up code, so it is a few hundred bytes and runs on any Linux of the same architecture. */
void _start(void);

void _start(void)
{
#if defined(__x86_64__)
    __asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall");
#elif defined(__aarch64__)
    __asm__ volatile("mov x0, #0\n\tmov x8, #93\n\tsvc #0");
#else
#error "prewarm-true: add the exit system call for this architecture"
#endif
    for (;;) {
    }
}
