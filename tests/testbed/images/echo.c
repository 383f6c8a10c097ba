/*
 * An opaque TCP echo server for the testbed's Pods: `echo PORT` accepts on PORT (all
 * addresses) and sends every byte back until the peer closes. One process per connection.
 * Written for mc's testbed (the egress must carry any TCP protocol); built static by
 * scripts/build-images into the client image as /echo.
 */
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void serve(int fd) {
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n <= 0) break;
    for (ssize_t off = 0; off < n;) {
      ssize_t w = write(fd, buf + off, (size_t)(n - off));
      if (w <= 0) _exit(0);
      off += w;
    }
  }
  _exit(0);
}

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  signal(SIGCHLD, SIG_IGN);
  int s = socket(AF_INET6, SOCK_STREAM, 0);
  int off = 0, on = 1;
  setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off);
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  struct sockaddr_in6 a;
  memset(&a, 0, sizeof a);
  a.sin6_family = AF_INET6;
  a.sin6_port = htons((unsigned short)atoi(argv[1]));
  if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 128) != 0) return 1;
  for (;;) {
    int c = accept(s, NULL, NULL);
    if (c < 0) continue;
    if (fork() == 0) {
      close(s);
      serve(c);
    }
    close(c);
  }
}
