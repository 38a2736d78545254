/*
 * chimera.h: the C ABI of Chimeraforge, for game engines (Unreal, Unity through P/Invoke, Godot)
 * and any C or C++ host. Link with libchimera_c.so (built as src/capi, target `chimera_c`).
 *
 * What it does: characters that banter in real time. An engine runs models (in this process
 * through llama.cpp, or on servers through endpoint pools); a scene puts characters on it, each a
 * session whose prompt stays cached, so a new line prefills only what is new; every line has a
 * latency budget to its first token (200 ms by default) and a record of whether it held.
 * Text streams to the host token by token and sentence by sentence, so speech can start early.
 * docs/capi.md is the guide; docs/banter.md describes scenes.
 *
 * --------------------------------------------------------------------------------------------
 * Conventions
 *
 * Handles. Every object is an opaque handle made by a `chimera_<object>_create`/`_open` call
 * and freed by its `_destroy`. Handles are independent: destroy them in any order. An engine
 * handle can be destroyed while scenes made from it are open; what they share is freed when the
 * last of them is destroyed. Destroying NULL does nothing.
 *
 * Ownership of strings. Strings passed in are copied before the call returns. Strings handed
 * out (`const char *` results, callback arguments) are owned by the library: a result stays
 * valid until its handle is destroyed; a callback argument only during the callback.
 * All text is UTF-8.
 *
 * Errors. Calls that can fail return a chimera_status; CHIMERA_OK is 0. On failure,
 * chimera_last_error() returns a message that says what was wrong and what to do; it belongs
 * to the calling thread and stays until that thread's next failing call. No C++ exception ever
 * crosses this interface.
 *
 * Parameters. Each `*_params` struct has a `*_default_params()` function: take the defaults,
 * change what you need, pass a pointer (NULL means the defaults).
 *
 * Callbacks. A callback is a function pointer plus a `void *user_data` the library passes back
 * untouched. Text callbacks return true to go on, false to cancel the line. Callbacks run either
 * - inside chimera_poll(), on the thread that calls it (CHIMERA_DELIVERY_POLL, the default:
 *   call chimera_poll(engine, 0) once per frame from the game's main thread, or loop on
 *   chimera_poll(engine, -1) on a thread of your own), or
 * - at once on the library's own threads (CHIMERA_DELIVERY_IMMEDIATE: lowest latency; the
 *   callback must be quick, must not block, and must be thread-safe).
 * Callbacks of one line run in order, one at a time; on_done is the last callback of a line.
 * A callback must not destroy the engine or the scene of its line; it may destroy the line.
 *
 * Threads. Every function may be called from any thread. Functions that wait
 * (chimera_line_wait, chimera_scene_warm_up, chimera_poll with a timeout) must not be called
 * from inside a callback running in CHIMERA_DELIVERY_IMMEDIATE mode.
 *
 * --------------------------------------------------------------------------------------------
 * Example (error checks left out):
 *
 *   chimera_engine *engine;
 *   chimera_engine_create(NULL, NULL, &engine);          // in-process, the tiny test model
 *   chimera_scene *scene;
 *   chimera_scene_open_file(engine, "tavern.toml", NULL, &scene);   // warms up every persona
 *   chimera_line_params lp = chimera_line_default_params();
 *   lp.on_sentence = speak_sentence;                      // bool fn(line, text, len, i, ud)
 *   chimera_line *line;
 *   chimera_scene_next(scene, &lp, &line);
 *   while (!chimera_line_done(line)) chimera_poll(engine, 16);   // or once per frame
 *   chimera_poll(engine, 0);                              // the last callbacks
 *   chimera_line_figures f;
 *   chimera_line_get_figures(line, &f);                   // f.ttft_line_ms, f.budget_held ...
 *   chimera_line_destroy(line);
 *   chimera_scene_destroy(scene);
 *   chimera_engine_destroy(engine);
 */
#ifndef CHIMERA_H
#define CHIMERA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32) && defined(CHIMERA_C_BUILD)
#define CHIMERA_API __declspec(dllexport)
#elif defined(_WIN32)
#define CHIMERA_API __declspec(dllimport)
#else
#define CHIMERA_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------ */
/* Status codes and errors                                                                    */

typedef enum chimera_status {
  CHIMERA_OK = 0,
  CHIMERA_ERR_INVALID_ARGUMENT = 1, /* a NULL handle or pointer, a value out of range */
  CHIMERA_ERR_CONFIG = 2,           /* the config or scene text is wrong (the message says where) */
  CHIMERA_ERR_MODEL = 3,            /* a model cannot be loaded, or a pool cannot be made */
  CHIMERA_ERR_NOT_FOUND = 4,        /* no such file or character */
  CHIMERA_ERR_TIMEOUT = 5,          /* a wait ran out before the line ended */
  CHIMERA_ERR_CANCELLED = 6,        /* the line was cancelled or interrupted */
  CHIMERA_ERR_BACKEND = 7,          /* the request failed: server down, server error, ... */
  CHIMERA_ERR_CLOSED = 8,           /* the scene was closed */
  CHIMERA_ERR_INTERNAL = 9          /* out of memory, or a bug: please report the message */
} chimera_status;

/* A short fixed name for a status ("CHIMERA_OK", ...). Never NULL; static storage. */
CHIMERA_API const char* chimera_status_name(chimera_status status);

/* The message of the calling thread's last failing call ("" when none). Valid until that
 * thread's next call into the library. */
CHIMERA_API const char* chimera_last_error(void);

/* The library's version, e.g. "0.1.0". Static storage. */
CHIMERA_API const char* chimera_version(void);

/* ------------------------------------------------------------------------------------------ */
/* Handles                                                                                    */

typedef struct chimera_engine chimera_engine;   /* models, pools, the callback queue */
typedef struct chimera_scene chimera_scene;     /* characters taking turns */
typedef struct chimera_session chimera_session; /* one character talking with the player */
typedef struct chimera_line chimera_line;       /* one line being generated, then its record */

/* ------------------------------------------------------------------------------------------ */
/* Engine                                                                                     */

typedef enum chimera_delivery {
  CHIMERA_DELIVERY_POLL = 0,     /* callbacks run inside chimera_poll() */
  CHIMERA_DELIVERY_IMMEDIATE = 1 /* callbacks run at once on the library's threads */
} chimera_delivery;

typedef struct chimera_engine_params {
  chimera_delivery delivery;  /* default CHIMERA_DELIVERY_POLL */
  const char* model;          /* GGUF file for characters that name neither model nor pool;
                                 NULL: the config's [engine] model, else the tiny synthetic
                                 model (made on first use) */
  const char* model_override; /* NULL, or a GGUF file every character runs on */
  int threads;                /* in-process decode threads; 0: the config's, else all cores */
  int io_threads;             /* threads for pool I/O; 0: the config's, else 1 */
} chimera_engine_params;

CHIMERA_API chimera_engine_params chimera_engine_default_params(void);

/* Makes an engine from a config text (TOML; NULL or "" for none):
 *
 *   [engine]
 *   model = "models/npc.gguf"   # default model; "tiny" for the synthetic test model
 *   threads = 0                 # in-process decode threads
 *   io_threads = 1
 *   [[pool]]                    # endpoint pools, as in docs/pools.md; characters name them
 *   name = "npcs"
 *   routing = "session-affinity"
 *   [[pool.endpoint]]
 *   url = "http://127.0.0.1:8080"
 *   backend = "openai"
 *
 * On success *out holds a new engine that the caller owns (chimera_engine_destroy). On failure
 * *out is set to NULL. Models are loaded when a scene first needs them, not here. */
CHIMERA_API chimera_status chimera_engine_create(const char* config_toml,
                                                 const chimera_engine_params* params,
                                                 chimera_engine** out);
/* The same, with the config read from a file. */
CHIMERA_API chimera_status chimera_engine_create_from_file(const char* path,
                                                           const chimera_engine_params* params,
                                                           chimera_engine** out);
/* Releases the caller's engine handle. Scenes and sessions made from it stay usable. */
CHIMERA_API void chimera_engine_destroy(chimera_engine* engine);

/* Runs the callbacks that are waiting (CHIMERA_DELIVERY_POLL), on the calling thread.
 * timeout_ms: 0 returns at once; > 0 waits up to that long for the first callback; -1 waits
 * until there is one. Returns how many callbacks ran (0 or more), or -1 when `engine` is NULL.
 * In CHIMERA_DELIVERY_IMMEDIATE mode it returns 0. */
CHIMERA_API int chimera_poll(chimera_engine* engine, int timeout_ms);

/* ------------------------------------------------------------------------------------------ */
/* Lines: callbacks, parameters, figures                                                      */

/* Spoken text (on_token) or reasoning (on_thinking) as it arrives. `text` is NUL-terminated
 * and `length` bytes long. Return false to cancel the line. */
typedef bool (*chimera_text_fn)(chimera_line* line, const char* text, size_t length,
                                void* user_data);
/* A complete sentence (or clause: the scene's `split`), trimmed, ready for text-to-speech;
 * index 0, 1, 2, ... within the line. Return false to cancel the line. */
typedef bool (*chimera_sentence_fn)(chimera_line* line, const char* text, size_t length, int index,
                                    void* user_data);
/* The line ended: CHIMERA_OK, CHIMERA_ERR_CANCELLED (cancelled or interrupted), or the error
 * (chimera_line_error says what). The last callback of the line. */
typedef void (*chimera_done_fn)(chimera_line* line, chimera_status status, void* user_data);

typedef struct chimera_line_params {
  const char* speaker; /* NULL: the scene's turn policy picks; else a character's name */
  int budget_ms;       /* time to the first token; 0: the scene's (default 200) */
  bool background;     /* an ambient line that may wait for live ones */
  chimera_text_fn on_token;
  chimera_text_fn on_thinking;
  chimera_sentence_fn on_sentence;
  chimera_done_fn on_done;
  void* user_data;
} chimera_line_params;

CHIMERA_API chimera_line_params chimera_line_default_params(void);

/* What one line did. Times in milliseconds; -1 when a figure does not exist (no token came).
 * Names follow docs/metrics.md (METRICS.md). */
typedef struct chimera_line_figures {
  int index;             /* position in the transcript; -1 when not added to it */
  int finished;          /* 1 once the line has ended */
  chimera_status status; /* as on_done got it (CHIMERA_OK while running) */
  int interrupted;       /* 1 when cancelled */
  int budget_held;       /* 1 held, 0 missed, -1 not decided (ended early, or still running) */
  double budget_ms;
  double ttft_line_ms;      /* first token - the moment the line was asked for */
  double ttft_client_ms;    /* first token - the request's t_send (METRICS.md) */
  double ttft_server_ms;    /* what the engine or server reports */
  double first_sentence_ms; /* first complete sentence - the moment the line was asked for */
  double e2e_ms;
  double director_ms;  /* the director's decision (turns = director), else 0 */
  double scheduled_ms; /* waiting for a free slot in the scene's scheduler */
  double decode_tps_client;
  int64_t tokens_out;
  int64_t tokens_in;            /* prompt tokens */
  int64_t prompt_tokens_cached; /* prompt tokens reused from the character's cache */
  int sentences;
  int attempts; /* endpoints tried: 2 when the line was hedged */
} chimera_line_figures;

/* Cancels the line now (idempotent). on_done still runs, with CHIMERA_ERR_CANCELLED. */
CHIMERA_API chimera_status chimera_line_cancel(chimera_line* line);
/* Waits until the line has ended (not until its callbacks ran: in poll mode, chimera_poll runs
 * them). timeout_ms -1: no limit. CHIMERA_OK when ended, CHIMERA_ERR_TIMEOUT otherwise. */
CHIMERA_API chimera_status chimera_line_wait(chimera_line* line, int timeout_ms);
CHIMERA_API bool chimera_line_done(const chimera_line* line);
CHIMERA_API chimera_status chimera_line_get_figures(const chimera_line* line,
                                                    chimera_line_figures* out);
/* The speaker, once chosen (NULL before); the spoken text, reasoning and error message once the
 * line has ended (NULL before; "" when there is none). Owned by the line. */
CHIMERA_API const char* chimera_line_speaker(const chimera_line* line);
CHIMERA_API const char* chimera_line_text(const chimera_line* line);
CHIMERA_API const char* chimera_line_thinking(const chimera_line* line);
CHIMERA_API const char* chimera_line_error(const chimera_line* line);
/* Releases the caller's line handle. A line still running is cancelled; none of its callbacks
 * runs after this returns (except one already running on another thread). */
CHIMERA_API void chimera_line_destroy(chimera_line* line);

/* ------------------------------------------------------------------------------------------ */
/* Scenes                                                                                     */

typedef struct chimera_scene_params {
  int warm_up;   /* 1: prefill every persona before returning; 0: no; -1 (default): as the
                    scene file says (default yes) */
  int budget_ms; /* 0: the scene's */
} chimera_scene_params;

CHIMERA_API chimera_scene_params chimera_scene_default_params(void);

/* Opens a scene from its TOML text (docs/banter.md). Loads the models it needs and, with
 * warm-up, prefills every character's prompt before returning. The caller owns *out
 * (chimera_scene_destroy). */
CHIMERA_API chimera_status chimera_scene_open(chimera_engine* engine, const char* scene_toml,
                                              const chimera_scene_params* params,
                                              chimera_scene** out);
CHIMERA_API chimera_status chimera_scene_open_file(chimera_engine* engine, const char* path,
                                                   const chimera_scene_params* params,
                                                   chimera_scene** out);
/* Cancels the scene's lines, waits for their requests to end, and frees the scene. */
CHIMERA_API void chimera_scene_destroy(chimera_scene* scene);

/* Prefills every character's prompt again (e.g. after loading a level); blocks. */
CHIMERA_API chimera_status chimera_scene_warm_up(chimera_scene* scene);
CHIMERA_API int chimera_scene_character_count(const chimera_scene* scene);
/* Owned by the scene. NULL when index is out of range. */
CHIMERA_API const char* chimera_scene_character_name(const chimera_scene* scene, int index);

/* Adds a line nobody generates: the player's (speaker NULL) or anyone's. With `interrupt`,
 * live lines are cancelled first: the player speaks over them. A line is at most 4096 bytes
 * (CHIMERA_ERR_INVALID_ARGUMENT otherwise): it must fit beside a persona in a context. */
CHIMERA_API chimera_status chimera_scene_say(chimera_scene* scene, const char* speaker,
                                             const char* text, bool interrupt);
/* Cancels every live line of the scene; returns how many (-1 when scene is NULL). */
CHIMERA_API int chimera_scene_interrupt(chimera_scene* scene);
/* Starts the next line and returns at once. The caller owns *out (chimera_line_destroy). */
CHIMERA_API chimera_status chimera_scene_next(chimera_scene* scene,
                                              const chimera_line_params* params,
                                              chimera_line** out);

/* ------------------------------------------------------------------------------------------ */
/* Sessions: one character and the player, without a scene file                             */

typedef struct chimera_session_params {
  const char* name;    /* the character's name (required) */
  const char* persona; /* who they are */
  const char* style;   /* how they speak */
  const char* setting; /* where they are */
  const char* player;  /* the player's name; NULL: "Player" */
  const char* model;   /* GGUF file; NULL: the engine's default */
  const char* pool;    /* or a pool of the engine config */
  int num_ctx;         /* 0: 384; else 64 to 131072 (it sizes the session's memory; checked
                          before anything is allocated, as in scene files) */
  int num_predict;     /* longest answer in tokens; 0: 48; at most 4096 */
  float temperature;   /* < 0: 0.8; at most 100; NaN is refused */
  int budget_ms;       /* 0: 200; at most 600000 */
  bool warm_up;        /* prefill the persona before returning (default true) */
} chimera_session_params;

CHIMERA_API chimera_session_params chimera_session_default_params(void);
CHIMERA_API chimera_status chimera_session_open(chimera_engine* engine,
                                                const chimera_session_params* params,
                                                chimera_session** out);
CHIMERA_API void chimera_session_destroy(chimera_session* session);
/* The player says `text` (interrupting a line still running) and the character answers.
 * `text` is at most 4096 bytes, as for chimera_scene_say. The caller owns *out
 * (chimera_line_destroy). */
CHIMERA_API chimera_status chimera_session_send(chimera_session* session, const char* text,
                                                const chimera_line_params* params,
                                                chimera_line** out);

/* ------------------------------------------------------------------------------------------ */
/* Agents that use tools: the model asks, the host's functions answer                        */
/*
 * A toolbox holds the host's tools: a name, a JSON schema of the parameters and a function.
 * chimera_agent_run() calls the model with them, runs the functions it asks for (several at once
 * when it asks for several in one step, each with a timeout), sends their results back under
 * the ids of the calls, and ends on a reply without calls (the answer) or after max_steps model
 * calls. Nothing a tool does ends the run: a tool that fails, times out, or that the model names
 * wrongly gives the model a result that says so ("error: ..."). docs/tools.md describes the loop.
 *
 * Ownership: a tool's `arguments_json` belongs to the library and is valid during the call; the
 * tool hands its result over with chimera_tool_output_set(), which copies it, so the host keeps
 * its own buffers. The output handle is valid only during that call of the tool.
 */

typedef struct chimera_toolbox chimera_toolbox;           /* the host's tools */
typedef struct chimera_tool_output chimera_tool_output;   /* where one call's result goes */
typedef struct chimera_agent_result chimera_agent_result; /* the record of one run */

/* A tool. `arguments_json` is the JSON object the model wrote, e.g. {"city": "Paris"} (UTF-8,
 * NUL-terminated). Set the result with chimera_tool_output_set() and return true; return false
 * when the tool failed: the model then reads "error: the tool 'NAME' failed: TEXT", TEXT being
 * what was set. Tools run on the library's threads, several at once when the model asks for
 * several calls in one step, so a tool must be thread-safe. A call that outlives its timeout
 * keeps its thread until it returns (it cannot be stopped from outside); its output is dropped. */
typedef bool (*chimera_tool_fn)(const char* arguments_json, chimera_tool_output* output,
                                void* user_data);

/* Sets the text the model reads (`length` bytes of UTF-8; copied). Called again, it replaces
 * the text. Only inside the tool call that was given `output`. */
CHIMERA_API void chimera_tool_output_set(chimera_tool_output* output, const char* text,
                                         size_t length);

CHIMERA_API chimera_status chimera_toolbox_create(chimera_toolbox** out);
/* A toolbox must outlive the runs that use it. */
CHIMERA_API void chimera_toolbox_destroy(chimera_toolbox* toolbox);
/* Adds a tool: `name` 1-64 letters, digits, '_' or '-', not yet in the toolbox; `description`
 * may be NULL; `parameters_json` a JSON schema object (NULL: no parameters); `user_data` is
 * passed back to `fn` untouched. Strings are copied. */
CHIMERA_API chimera_status chimera_toolbox_add(chimera_toolbox* toolbox, const char* name,
                                               const char* description, const char* parameters_json,
                                               chimera_tool_fn fn, void* user_data);

/* A bias added to one token's logit before sampling (OpenAI's logit_bias), -100 to 100. */
typedef struct chimera_logit_bias {
  int32_t token;
  float bias;
} chimera_logit_bias;

typedef struct chimera_agent_params {
  const char* model;       /* GGUF file run in-process, with a tool-calling chat template in
                              tokenizer.chat_template; NULL: the engine's default */
  const char* pool;        /* or a pool of the engine config (OpenAI-compatible or Ollama) */
  const char* system;      /* a system message; NULL: none */
  const char* tool_choice; /* first step: "auto" (NULL), "required" (the model must call a
                              tool: a grammar holds it to the call format), or "none" */
  int max_steps;           /* model calls at most; 0: 8; at most 1000 */
  int tool_timeout_ms;     /* each tool call; 0: 30000; at most 86400000 */
  int num_ctx;             /* in-process context; 0: 4096; else 64 to 131072 */
  int num_predict;         /* tokens per model call; 0: 256; at most 131072 */
  float temperature;       /* < 0: the backend's default; at most 100; NaN is refused */
  int64_t seed;            /* < 0: random */
  const chimera_logit_bias* logit_bias; /* n_logit_bias entries (copied); NULL: none */
  int n_logit_bias;
} chimera_agent_params;

CHIMERA_API chimera_agent_params chimera_agent_default_params(void);

/* Runs the loop on the user's message `prompt` and blocks until it ends. CHIMERA_OK when the
 * loop ran, whatever its end (chimera_agent_result_end: "answer", "max_steps", "model_error",
 * "cancelled"); an error status, with *out NULL, when the params are wrong or the model or pool
 * cannot be had. The in-process model of a run is loaded once per engine and kept for later
 * runs. Must not be called from inside a callback. The caller owns *out
 * (chimera_agent_result_destroy). */
CHIMERA_API chimera_status chimera_agent_run(chimera_engine* engine,
                                             const chimera_agent_params* params,
                                             const chimera_toolbox* toolbox, const char* prompt,
                                             chimera_agent_result** out);
CHIMERA_API void chimera_agent_result_destroy(chimera_agent_result* result);
/* How the run ended: "answer", "max_steps", "model_error" or "cancelled". Owned by the result. */
CHIMERA_API const char* chimera_agent_result_end(const chimera_agent_result* result);
/* The last reply's text ("" when none). Owned by the result. */
CHIMERA_API const char* chimera_agent_result_answer(const chimera_agent_result* result);
/* Why a model call failed ("" when none). Owned by the result. */
CHIMERA_API const char* chimera_agent_result_error(const chimera_agent_result* result);
/* Model calls made. */
CHIMERA_API int chimera_agent_result_steps(const chimera_agent_result* result);
/* The whole record as JSON: each step's figures (model_ms, tools_ms, ttft_ms, tokens) and tool
 * calls (id, name, arguments, outcome, result, ms), and the conversation (docs/tools.md). Owned
 * by the result. */
CHIMERA_API const char* chimera_agent_result_json(const chimera_agent_result* result);

#ifdef __cplusplus
}
#endif

#endif /* CHIMERA_H */
