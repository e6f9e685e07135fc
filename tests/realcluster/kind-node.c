/* A stand-in for a kind node container's processes, for tests/test_real_kind.py: the real kind CLI finds
 * node containers by their labels and reads /etc/kubernetes/admin.conf with `podman exec ... cat`.
 * Installed as /kind-node (the container's main process: it waits for ever) and as /bin/cat (prints files
 * as cat does, with cat's error message when one is missing -- as on a node whose kubeadm init never ran).
 * Static, so the image is FROM scratch and nothing needs pulling. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *slash = strrchr(argv[0], '/');
    const char *name = slash ? slash + 1 : argv[0];
    if (strcmp(name, "cat") == 0) {
        int status = 0;
        for (int i = 1; i < argc; i++) {
            FILE *file = fopen(argv[i], "r");
            if (file == NULL) {
                fprintf(stderr, "cat: %s: %s\n", argv[i], strerror(errno));
                status = 1;
                continue;
            }
            char buffer[4096];
            size_t count;
            while ((count = fread(buffer, 1, sizeof buffer, file)) > 0) {
                fwrite(buffer, 1, count, stdout);
            }
            fclose(file);
        }
        return status;
    }
    for (;;) {
        pause();
    }
}
