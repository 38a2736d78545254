/* A plain C host for the Chimeraforge C ABI: what a game engine does, in a page.
 *
 * It opens a scene, and in a "game loop" (one iteration per 16 ms frame) asks for the next line
 * whenever nobody is speaking, streams its text to the screen, hands each complete sentence to
 * "text-to-speech" (here: printed), and prints each line's figures.
 *
 *   cc -std=c11 banter_host.c -I include -L build/src/capi -lchimera_c -o banter_host
 *   LD_LIBRARY_PATH=build/src/capi ./banter_host examples/scenes/tavern.toml 6 [model.gguf]
 */
#include <chimera.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
  int speaking; /* a line is running */
  int named;    /* its speaker's name is on screen */
  int sentences;
  int lines_done;
} game_state;

static void sleep_ms(int ms) {
  struct timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = (long)(ms % 1000) * 1000000L;
  nanosleep(&ts, NULL);
}

/* Spoken text as it streams: show it like subtitles. */
static bool on_token(chimera_line *line, const char *text, size_t length, void *user_data) {
  game_state *g = (game_state *)user_data;
  if (!g->named) { /* the speaker is known before the first token */
    printf("%s:", chimera_line_speaker(line));
    g->named = 1;
  }
  fwrite(text, 1, length, stdout);
  fflush(stdout);
  return true; /* false would cancel the line */
}

/* A complete sentence: this is where a game starts text-to-speech. */
static bool on_sentence(chimera_line *line, const char *text, size_t length, int index,
                        void *user_data) {
  game_state *g = (game_state *)user_data;
  (void)length;
  g->sentences++;
  fprintf(stderr, "\n  [tts] %s #%d: %s", chimera_line_speaker(line), index, text);
  return true;
}

static void on_done(chimera_line *line, chimera_status status, void *user_data) {
  game_state *g = (game_state *)user_data;
  chimera_line_figures f;
  chimera_line_get_figures(line, &f);
  printf("\n");
  fprintf(stderr,
          "  [figures] %s  ttft_line %.1f ms  ttft_client %.1f ms  budget %.0f ms %s  tokens %lld"
          "  cached %lld/%lld\n",
          chimera_status_name(status), f.ttft_line_ms, f.ttft_client_ms, f.budget_ms,
          f.budget_held == 1 ? "held" : (f.budget_held == 0 ? "MISSED" : "n/a"),
          (long long)f.tokens_out, (long long)f.prompt_tokens_cached, (long long)f.tokens_in);
  if (status != CHIMERA_OK) fprintf(stderr, "  [error] %s\n", chimera_line_error(line));
  g->speaking = 0;
  g->lines_done++;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SCENE.toml [LINES] [MODEL.gguf]\n", argv[0]);
    return 2;
  }
  const int lines = argc > 2 ? atoi(argv[2]) : 6;

  chimera_engine_params ep = chimera_engine_default_params();
  ep.delivery = CHIMERA_DELIVERY_POLL; /* callbacks on this thread, inside chimera_poll */
  ep.threads = 1;
  if (argc > 3) ep.model_override = argv[3];
  chimera_engine *engine = NULL;
  if (chimera_engine_create(NULL, &ep, &engine) != CHIMERA_OK) {
    fprintf(stderr, "engine: %s\n", chimera_last_error());
    return 1;
  }
  chimera_scene *scene = NULL;
  if (chimera_scene_open_file(engine, argv[1], NULL, &scene) != CHIMERA_OK) { /* warms up */
    fprintf(stderr, "scene: %s\n", chimera_last_error());
    chimera_engine_destroy(engine);
    return 1;
  }
  printf("%d characters:", chimera_scene_character_count(scene));
  for (int i = 0; i < chimera_scene_character_count(scene); ++i) {
    printf(" %s", chimera_scene_character_name(scene, i));
  }
  printf("\n");

  game_state g = {0, 0, 0, 0};
  chimera_line *line = NULL;
  int failed = 0;
  int frames = 0;
  while (g.lines_done < lines && frames++ < 100000) {
    if (!g.speaking) {
      if (line != NULL) {
        chimera_line_figures f;
        chimera_line_get_figures(line, &f);
        if (f.status != CHIMERA_OK) failed++;
        chimera_line_destroy(line);
        line = NULL;
      }
      chimera_line_params lp = chimera_line_default_params();
      lp.on_token = on_token;
      lp.on_sentence = on_sentence;
      lp.on_done = on_done;
      lp.user_data = &g;
      if (chimera_scene_next(scene, &lp, &line) != CHIMERA_OK) {
        fprintf(stderr, "next line: %s\n", chimera_last_error());
        failed++;
        break;
      }
      g.speaking = 1;
      g.named = 0;
    }
    chimera_poll(engine, 0); /* run what arrived since the last frame */
    sleep_ms(16);            /* the rest of the frame */
  }
  if (line != NULL) {
    chimera_line_figures f;
    chimera_line_get_figures(line, &f);
    if (f.status != CHIMERA_OK) failed++;
    chimera_line_destroy(line);
  }
  printf("%d lines, %d sentences spoken, %d failed\n", g.lines_done, g.sentences, failed);
  chimera_scene_destroy(scene);
  chimera_engine_destroy(engine);
  return failed == 0 && g.lines_done == lines ? 0 : 1;
}
