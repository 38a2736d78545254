/* The floor under the concurrency rows: the least a client can do to stream N agents' requests
 * from the synthetic server, in the harness's records format (docs/records.md), so that
 * bench/compare/compare.py computes its figures exactly as for the three programs
 * (`--programs ... floor`).
 *
 * One thread, one epoll set, level-triggered, one read per readiness (no read that finds the
 * socket empty), keep-alive connections, no allocation per chunk, records kept in memory and
 * written at the end. It speaks only what the synthetic server sends on Ollama's /api/chat
 * (chunked NDJSON, one record per line) and does no JSON parsing beyond finding the few keys
 * a record's figures need: a client that did less would not be a client. What it measures is
 * what the machine (two processes, the kernel's loopback, the scheduler's wake-ups) costs
 * before any client work; what chimeraforge or a peer shows above it is the client's own.
 *
 * Usage: stream_floor --endpoint http://127.0.0.1:PORT --backend ollama --agents N
 *          --requests-per-agent K --model M --prompt P --max-tokens T --records FILE
 *          [--record-lags] [--timeout S] [--stagger-ms MS]
 *        stream_floor --endpoint URL ... --startup-probe   (one request of one token, no records)
 * Exit status: 0 when every request succeeded, 1 when some failed, 2 on a usage error. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { IN_CAP = 65536, LINE_CAP = 65536, STALL_NS = 1000000 };

static int64_t now_ns(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

typedef struct {
  int ok;
  char error[160];
  int64_t t_send, t_first, t_last, t_done, first_byte_server, tokens_out;
  int64_t chunks, lag_sum, lag_max, stalls;
  int64_t* lags; /* max_tokens + 1 slots when --record-lags */
  int64_t n_lags;
} Record;

/* Where an agent's response is: its head, a chunk-size line, a chunk's data, the CRLF after
 * it, or the end of the body (the trailer's empty line). */
enum Phase { CONNECTING, HEAD, SIZE, DATA, DATA_END, TRAILER };

typedef struct {
  int fd;
  int request; /* the request in flight */
  enum Phase phase;
  int64_t chunk_left;
  char head[4096];
  size_t head_len;
  char size_line[32];
  size_t size_len;
  char* line; /* the NDJSON record being assembled (LINE_CAP) */
  size_t line_len;
  int finished; /* the server's done:true record came */
} Agent;

static const char* g_host;
static int g_port;
static int g_agents = 1, g_requests = 1, g_max_tokens = 20, g_record_lags, g_probe;
static double g_timeout_s = 180, g_stagger_ms = 0;
static const char *g_model = "synth", *g_prompt = "hi", *g_records, *g_endpoint;
static char g_request[8192];
static size_t g_request_len;
static Record* g_rec; /* agents x requests */
static Agent* g_agent;
static int g_ep;
static int g_active;

static Record* rec_of(const Agent* a, int agent) {
  return &g_rec[agent * g_requests + a->request];
}

static void json_escape(char* out, size_t cap, const char* s) {
  size_t n = 0;
  for (; *s && n + 7 < cap; ++s) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[n++] = '\\';
      out[n++] = (char)c;
    } else if (c < 0x20) {
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
    } else {
      out[n++] = (char)c;
    }
  }
  out[n] = 0;
}

static void build_request(void) {
  char model[512], prompt[4096], body[6144];
  json_escape(model, sizeof model, g_model);
  json_escape(prompt, sizeof prompt, g_prompt);
  int b = snprintf(body, sizeof body,
                   "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}],"
                   "\"options\":{\"num_predict\":%d},\"stream\":true}",
                   model, prompt, g_max_tokens);
  g_request_len = (size_t)snprintf(g_request, sizeof g_request,
                                   "POST /api/chat HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: "
                                   "application/json\r\nContent-Length: %d\r\n\r\n%s",
                                   g_host, g_port, b, body);
}

static void fail(Agent* a, int agent, const char* why);

static int open_connection(Agent* a, int agent) {
  a->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (a->fd < 0) {
    fail(a, agent, "socket() failed");
    return -1;
  }
  int one = 1;
  setsockopt(a->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct sockaddr_in sa;
  memset(&sa, 0, sizeof sa);
  sa.sin_family = AF_INET;
  sa.sin_port = htons((uint16_t)g_port);
  inet_pton(AF_INET, g_host, &sa.sin_addr);
  a->phase = CONNECTING;
  struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)agent};
  if (connect(a->fd, (struct sockaddr*)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
    fail(a, agent, "connect() failed");
    return -1;
  }
  epoll_ctl(g_ep, EPOLL_CTL_ADD, a->fd, &ev);
  return 0;
}

/* Sends the agent's next request on its connection (the request is small: one write). */
static void send_request(Agent* a, int agent) {
  Record* r = rec_of(a, agent);
  r->t_send = now_ns();
  a->phase = HEAD;
  a->head_len = a->size_len = a->line_len = 0;
  a->finished = 0;
  if (send(a->fd, g_request, g_request_len, MSG_NOSIGNAL) != (ssize_t)g_request_len) {
    fail(a, agent, "send() failed");
  }
}

/* Starts the agent's request `a->request`, or retires the agent when it has none left. */
static void next_request(Agent* a, int agent) {
  if (a->request >= g_requests) {
    if (a->fd >= 0) close(a->fd);
    a->fd = -1;
    --g_active;
    return;
  }
  if (a->fd < 0) {
    if (open_connection(a, agent) == 0) rec_of(a, agent)->t_send = now_ns();
    return;
  }
  send_request(a, agent);
}

static void fail(Agent* a, int agent, const char* why) {
  Record* r = rec_of(a, agent);
  r->ok = 0;
  snprintf(r->error, sizeof r->error, "%s", why);
  if (r->t_send == 0) r->t_send = now_ns();
  r->t_done = now_ns();
  if (a->fd >= 0) close(a->fd); /* epoll forgets a closed descriptor */
  a->fd = -1;
  ++a->request;
  next_request(a, agent);
}

static int64_t number_after(const char* line, size_t len, const char* key) {
  const char* p = memmem(line, len, key, strlen(key));
  return p ? strtoll(p + strlen(key), NULL, 10) : -1;
}

/* One NDJSON record: a token when its message has content; the end when done is true. */
static void on_record(Agent* a, int agent, const char* line, size_t len) {
  Record* r = rec_of(a, agent);
  static const char kContent[] = "\"content\":\"";
  const char* c = memmem(line, len, kContent, sizeof kContent - 1);
  if (c != NULL && c + sizeof kContent - 1 < line + len && c[sizeof kContent - 1] != '"') {
    const int64_t t = now_ns();
    const int64_t sent = number_after(line, len, "\"server_sent_ns\":");
    if (r->t_first == 0) {
      r->t_first = t;
      if (sent > 0) r->first_byte_server = sent;
    }
    r->t_last = t;
    ++r->chunks;
    if (sent > 0) {
      const int64_t lag = t - sent;
      r->lag_sum += lag;
      if (lag > r->lag_max) r->lag_max = lag;
      if (lag > STALL_NS) ++r->stalls;
      if (r->lags != NULL && r->n_lags <= g_max_tokens) r->lags[r->n_lags++] = lag;
    }
  }
  if (memmem(line, len, "\"done\":true", 11) != NULL) {
    a->finished = 1;
    r->tokens_out = number_after(line, len, "\"eval_count\":");
  }
}

/* Feeds body bytes (chunked transfer coding) through the record assembler. Returns 1 at the
 * end of the body. */
static int on_body(Agent* a, int agent, const char* p, size_t n) {
  while (n > 0) {
    if (a->phase == SIZE || a->phase == DATA_END || a->phase == TRAILER) {
      const char c = *p++;
      --n;
      if (c != '\n') {
        if (c != '\r' && a->size_len + 1 < sizeof a->size_line) a->size_line[a->size_len++] = c;
        continue;
      }
      a->size_line[a->size_len] = 0;
      a->size_len = 0;
      if (a->phase == DATA_END) {
        a->phase = SIZE;
      } else if (a->phase == TRAILER) {
        if (a->size_line[0] == 0) return 1; /* the empty line that ends the message */
      } else {
        a->chunk_left = strtoll(a->size_line, NULL, 16);
        a->phase = a->chunk_left == 0 ? TRAILER : DATA;
      }
      continue;
    }
    /* DATA: up to chunk_left bytes of records. */
    size_t take = n < (size_t)a->chunk_left ? n : (size_t)a->chunk_left;
    for (size_t i = 0; i < take; ++i) {
      if (p[i] == '\n') {
        on_record(a, agent, a->line, a->line_len);
        a->line_len = 0;
      } else if (a->line_len < LINE_CAP) {
        a->line[a->line_len++] = p[i];
      }
    }
    p += take;
    n -= take;
    a->chunk_left -= (int64_t)take;
    if (a->chunk_left == 0) a->phase = DATA_END;
  }
  return 0;
}

static void on_readable(Agent* a, int agent, char* buf) {
  const ssize_t got = recv(a->fd, buf, IN_CAP, 0);
  if (got <= 0) {
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return;
    fail(a, agent, got == 0 ? "the server closed the connection" : "recv() failed");
    return;
  }
  const char* p = buf;
  size_t n = (size_t)got;
  if (a->phase == HEAD) {
    /* Headers: collected until the empty line; the status must be 200 and the body chunked. */
    size_t room = sizeof a->head - 1 - a->head_len;
    size_t take = n < room ? n : room;
    memcpy(a->head + a->head_len, p, take);
    a->head_len += take;
    a->head[a->head_len] = 0;
    char* end = strstr(a->head, "\r\n\r\n");
    if (end == NULL) {
      if (a->head_len == sizeof a->head - 1) fail(a, agent, "response head too long");
      return;
    }
    if (strncmp(a->head, "HTTP/1.1 200", 12) != 0) {
      fail(a, agent, "the server did not answer 200");
      return;
    }
    const size_t body_at = (size_t)(end + 4 - a->head) - (a->head_len - take);
    p += body_at;
    n -= body_at;
    a->phase = SIZE;
  }
  if (on_body(a, agent, p, n)) {
    Record* r = rec_of(a, agent);
    r->t_done = now_ns();
    r->ok = a->finished && r->t_first != 0;
    if (!r->ok) snprintf(r->error, sizeof r->error, "the stream ended without a done record");
    ++a->request;
    next_request(a, agent);
  }
}

static void write_records(char** argv, int argc) {
  FILE* f = fopen(g_records, "w");
  if (f == NULL) {
    perror("stream_floor: --records");
    exit(1);
  }
  fprintf(f, "{\"kind\":\"header\",\"program\":\"floor\",\"command\":[");
  for (int i = 0; i < argc; ++i) {
    char esc[8192];
    json_escape(esc, sizeof esc, argv[i]);
    fprintf(f, "%s\"%s\"", i ? "," : "", esc);
  }
  fprintf(f,
          "],\"endpoint\":\"%s\",\"backend\":\"ollama\",\"agents\":%d,\"requests_per_agent\":%d,"
          "\"model\":\"%s\",\"max_tokens\":%d,\"record_lags\":%s,\"env\":{}}\n",
          g_endpoint, g_agents, g_requests, g_model, g_max_tokens,
          g_record_lags ? "true" : "false");
  for (int i = 0; i < g_agents; ++i) {
    for (int k = 0; k < g_requests; ++k) {
      const Record* r = &g_rec[i * g_requests + k];
      char opt[4][24];
      const int64_t v[4] = {r->t_first, r->t_last, r->first_byte_server, r->tokens_out};
      for (int j = 0; j < 4; ++j) {
        if (v[j] > 0 || (j == 3 && v[j] == 0 && r->ok)) {
          snprintf(opt[j], sizeof opt[j], "%lld", (long long)v[j]);
        } else {
          strcpy(opt[j], "null");
        }
      }
      fprintf(f,
              "{\"program\":\"floor\",\"agent\":%d,\"request\":%d,\"ok\":%s,\"error\":\"%s\","
              "\"t_send_ns\":%lld,\"t_first_token_ns\":%s,\"t_last_token_ns\":%s,"
              "\"t_done_ns\":%lld,\"first_byte_server_ns\":%s,\"tokens_out\":%s,\"chunks\":%lld,"
              "\"lag_sum_ns\":%lld,\"lag_max_ns\":%lld,\"stalls\":%lld",
              i, k, r->ok ? "true" : "false", r->error, (long long)r->t_send, opt[0], opt[1],
              (long long)r->t_done, opt[2], opt[3], (long long)r->chunks, (long long)r->lag_sum,
              (long long)r->lag_max, (long long)r->stalls);
      if (r->lags != NULL) {
        fprintf(f, ",\"lags_ns\":[");
        for (int64_t j = 0; j < r->n_lags; ++j) {
          fprintf(f, "%s%lld", j ? "," : "", (long long)r->lags[j]);
        }
        fprintf(f, "]");
      }
      fprintf(f, ",\"endpoint\":\"%s\"}\n", g_endpoint);
    }
  }
  fclose(f);
}

static int usage(const char* why) {
  fprintf(stderr,
          "stream_floor: %s\nusage: stream_floor --endpoint http://127.0.0.1:PORT --backend ollama "
          "--agents N --requests-per-agent K --model M --prompt P --max-tokens T --records FILE "
          "[--record-lags] [--timeout S] [--stagger-ms MS] [--startup-probe]\n",
          why);
  return 2;
}

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    const char* k = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
    if (strcmp(k, "--record-lags") == 0) {
      g_record_lags = 1;
    } else if (strcmp(k, "--startup-probe") == 0) {
      g_probe = 1;
    } else if (v == NULL) {
      return usage("a value is missing");
    } else {
      ++i;
      if (strcmp(k, "--endpoint") == 0) {
        g_endpoint = v;
      } else if (strcmp(k, "--backend") == 0) {
        if (strcmp(v, "ollama") != 0) return usage("only --backend ollama is spoken");
      } else if (strcmp(k, "--agents") == 0) {
        g_agents = atoi(v);
      } else if (strcmp(k, "--requests-per-agent") == 0) {
        g_requests = atoi(v);
      } else if (strcmp(k, "--model") == 0) {
        g_model = v;
      } else if (strcmp(k, "--prompt") == 0) {
        g_prompt = v;
      } else if (strcmp(k, "--max-tokens") == 0) {
        g_max_tokens = atoi(v);
      } else if (strcmp(k, "--records") == 0) {
        g_records = v;
      } else if (strcmp(k, "--timeout") == 0) {
        g_timeout_s = atof(v);
      } else if (strcmp(k, "--stagger-ms") == 0) {
        g_stagger_ms = atof(v);
      } else {
        return usage("unknown option");
      }
    }
  }
  static char host[64];
  if (g_endpoint == NULL || sscanf(g_endpoint, "http://%63[0-9.]:%d", host, &g_port) != 2) {
    return usage("--endpoint must be http://IPV4:PORT");
  }
  g_host = host;
  if (g_probe) {
    g_agents = g_requests = g_max_tokens = 1;
    g_record_lags = 0;
  } else if (g_records == NULL) {
    return usage("--records is required");
  }
  if (g_agents < 1 || g_requests < 1 || g_max_tokens < 1) return usage("counts must be >= 1");
  build_request();
  g_rec = calloc((size_t)g_agents * (size_t)g_requests, sizeof *g_rec);
  g_agent = calloc((size_t)g_agents, sizeof *g_agent);
  if (g_rec == NULL || g_agent == NULL) return 1;
  if (g_record_lags) {
    for (int i = 0; i < g_agents * g_requests; ++i) {
      g_rec[i].lags = calloc((size_t)g_max_tokens + 1, sizeof(int64_t));
    }
  }
  g_ep = epoll_create1(0);
  static char buf[IN_CAP];
  g_active = g_agents;
  for (int i = 0; i < g_agents; ++i) {
    g_agent[i].fd = -1;
    g_agent[i].line = malloc(LINE_CAP);
  }
  /* Agent i starts at i/N of the stagger window, as every program compared does. */
  const int64_t t_start = now_ns();
  int started = 0;
  const int64_t deadline = t_start + (int64_t)(g_timeout_s * 1e9);
  struct epoll_event events[256];
  while (g_active > 0) {
    int64_t now = now_ns();
    while (started < g_agents &&
           t_start + (int64_t)(g_stagger_ms * 1e6 * started / g_agents) <= now) {
      next_request(&g_agent[started], started);
      ++started;
    }
    if (g_active == 0) break;
    int64_t wait_ns = deadline - now;
    if (wait_ns <= 0) break;
    if (started < g_agents) {
      const int64_t next = t_start + (int64_t)(g_stagger_ms * 1e6 * started / g_agents) - now;
      if (next < wait_ns) wait_ns = next;
    }
    if (wait_ns > 1000000000) wait_ns = 1000000000;
    const struct timespec ts = {wait_ns / 1000000000, wait_ns % 1000000000};
    const int n = epoll_pwait2(g_ep, events, 256, &ts, NULL);
    for (int e = 0; e < n; ++e) {
      const int i = (int)events[e].data.u32;
      Agent* a = &g_agent[i];
      if (a->fd < 0) continue;
      if (a->phase == CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(a->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          fail(a, i, "connect failed");
          continue;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(g_ep, EPOLL_CTL_MOD, a->fd, &ev);
        send_request(a, i);
        continue;
      }
      on_readable(a, i, buf);
    }
  }
  int failed = 0;
  for (int i = 0; i < g_agents; ++i) {
    while (g_agent[i].request < g_requests) {
      Record* r = rec_of(&g_agent[i], i);
      if (r->t_send == 0) r->t_send = now_ns();
      r->t_done = now_ns();
      snprintf(r->error, sizeof r->error, "timed out after %.0f s", g_timeout_s);
      ++g_agent[i].request;
    }
  }
  for (int i = 0; i < g_agents * g_requests; ++i) failed += !g_rec[i].ok;
  if (g_records != NULL && !g_probe) write_records(argv, argc);
  return failed ? 1 : 0;
}
