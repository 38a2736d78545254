/* The least an HTTP client process can do: connect to 127.0.0.1:PORT, send one Ollama
 * /api/generate request, read the answer to its end, exit. Linked statically, it is the floor
 * under the harness's `startup` figure on a machine (spawn, exec, connect, one write).
 * Usage: floor PORT */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: floor PORT\n");
    return 2;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)atoi(argv[1]));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) {
    perror("floor: connect");
    return 1;
  }
  const char* body =
      "{\"model\":\"synth\",\"prompt\":\"hi\",\"stream\":true,\"options\":{\"num_predict\":1}}";
  char req[512];
  int n = snprintf(req, sizeof req,
                   "POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                   "application/json\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                   strlen(body), body);
  if (write(fd, req, (size_t)n) != n) {
    perror("floor: write");
    return 1;
  }
  char buf[4096];
  while (read(fd, buf, sizeof buf) > 0) {
  }
  close(fd);
  return 0;
}
