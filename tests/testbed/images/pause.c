/*
 * The sandbox ("pause") process of every Pod on the testbed's nodes, and the keep-alive process
 * of the client image: it holds the Pod's namespaces open and waits for a signal.
 * SIGINT/SIGTERM end it; SIGCHLD reaps any child (it is PID 1 in its PID namespace).
 * Written for mc's testbed; built static by scripts/build-images.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) { (void)sig; _exit(0); }

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction sa = {0};
  sa.sa_handler = stop;
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  sa.sa_handler = reap;
  sa.sa_flags = SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  for (;;) pause();
  return 0;
}
