/* prewarm-true: exits 0 and does nothing else. It is copied into every prewarm pod (through an
 * init container and an emptyDir) so that any image, even one without a shell or /bin/true
 * (distroless, scratch), has a command to "run" once its pull is done.
 *
 *   prewarm-true [anything]        exit 0
 *   prewarm-true install DEST      copy this very binary (/proc/self/exe) to DEST, mode 0755;
 *                                  exit 0, or 1 with a line on stderr if anything fails
 *
 * The init container runs "/prewarm-true install /prewarm/true" from prewarm's own image, and each
 * image container then runs /prewarm/true from the shared volume.
 *
 * Built static with no libc start-up code and no libc calls (raw system calls for x86_64 and
 * aarch64, arguments read from the initial stack), so it is a few KiB and runs on any Linux of the
 * same architecture whatever the image holds. */

#define AT_FDCWD (-100)
#define O_RDONLY 0
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define O_CLOEXEC 02000000
#define EINTR 4
#define MODE 0755

#if defined(__x86_64__)
enum {
    SYS_READ = 0,
    SYS_WRITE = 1,
    SYS_CLOSE = 3,
    SYS_FSYNC = 74,
    SYS_FCHMOD = 91,
    SYS_OPENAT = 257,
    SYS_EXIT_GROUP = 231
};

/* _start: the kernel leaves argc at (%rsp), then argv[], NULL, envp[]. Hand that to start_c with
 * the stack aligned as the ABI wants for a call. */
__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "    xor %rbp, %rbp\n"
        "    mov %rsp, %rdi\n"
        "    and $-16, %rsp\n"
        "    call start_c\n"
        "    hlt\n");

static long sys(long n, long a, long b, long c, long d)
{
    long ret;
    register long r10 __asm__("r10") = d;
    __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10) : "rcx", "r11", "memory");
    return ret;
}
#elif defined(__aarch64__)
enum {
    SYS_READ = 63,
    SYS_WRITE = 64,
    SYS_CLOSE = 57,
    SYS_FSYNC = 82,
    SYS_FCHMOD = 52,
    SYS_OPENAT = 56,
    SYS_EXIT_GROUP = 94
};

__asm__(".text\n"
        ".global _start\n"
        "_start:\n"
        "    mov x29, #0\n"
        "    mov x30, #0\n"
        "    mov x0, sp\n"
        "    bl start_c\n"
        "    brk #0\n");

static long sys(long n, long a, long b, long c, long d)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    register long x3 __asm__("x3") = d;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    return x0;
}
#else
#error "prewarm-true: add the system calls for this architecture"
#endif

void start_c(long *sp);

__attribute__((noreturn)) static void quit(int code)
{
    for (;;)
        sys(SYS_EXIT_GROUP, code, 0, 0, 0);
}

/* strlen without libc. The empty asm keeps the compiler from seeing the strlen idiom and calling
 * libc's strlen, which in a static glibc is an IFUNC that needs the start-up code we do not run. */
static unsigned long len(const char *s)
{
    unsigned long n = 0;
    while (s[n] != '\0') {
        n++;
        __asm__("" : "+r"(n));
    }
    return n;
}

static int same(const char *a, const char *b)
{
    while (*a != '\0' && *a == *b) {
        a++;
        b++;
    }
    return *a == *b;
}

/* Writes all of p, retrying short writes and interruptions; 0 or -1. */
static int write_all(int fd, const char *p, long n)
{
    while (n > 0) {
        long w = sys(SYS_WRITE, fd, (long)p, n, 0);
        if (w == -EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= w;
    }
    return 0;
}

__attribute__((noreturn)) static void die(const char *what, const char *path)
{
    write_all(2, "prewarm-true: install: ", 23);
    write_all(2, what, (long)len(what));
    write_all(2, path, (long)len(path));
    write_all(2, "\n", 1);
    quit(1);
}

static void install(const char *dest)
{
    static char buf[4096];
    const char *self = "/proc/self/exe";
    int in = (int)sys(SYS_OPENAT, AT_FDCWD, (long)self, O_RDONLY | O_CLOEXEC, 0);
    if (in < 0)
        die("cannot open ", self);
    int out = (int)sys(SYS_OPENAT, AT_FDCWD, (long)dest, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, MODE);
    if (out < 0)
        die("cannot create ", dest);
    for (;;) {
        long r = sys(SYS_READ, in, (long)buf, sizeof buf, 0);
        if (r == -EINTR)
            continue;
        if (r < 0)
            die("cannot read ", self);
        if (r == 0)
            break;
        if (write_all(out, buf, r) != 0)
            die("cannot write ", dest);
    }
    /* the umask may have taken bits away from MODE; every user must be able to run the copy */
    if (sys(SYS_FCHMOD, out, MODE, 0, 0) < 0)
        die("cannot chmod ", dest);
    sys(SYS_FSYNC, out, 0, 0, 0);
    if (sys(SYS_CLOSE, out, 0, 0, 0) < 0)
        die("cannot close ", dest);
    sys(SYS_CLOSE, in, 0, 0, 0);
}

void start_c(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    if (argc >= 2 && same(argv[1], "install")) {
        if (argc != 3)
            die("usage: prewarm-true install DEST", "");
        install(argv[2]);
    }
    quit(0);
}
