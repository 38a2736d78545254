// Markdown: tables become rows (the CSV column rules), headings set the context of what follows
// them, and "Key: 12.3 unit" lines in paragraphs and list items are harvested. Documents in the
// common subset are read by a line scanner (LineScanner below); the rest by cmark-gfm with the
// table extension. Both report to one MarkdownSink, so their results are the same.
#include "ingest/internal.hpp"

#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>

namespace chimera::ingest::detail {

namespace {

// cmark allocates and frees every node, string buffer and literal through malloc; on this
// workload that was a third of the Markdown time. A bump allocator per thread, reset before each
// document, makes allocation a pointer increment and freeing a no-op. Nothing cmark allocates
// outlives parse_markdown(): literals are copied out before the next document.
class BumpArena {
 public:
  void reset() {
    if (total_ > kKeep) {
      chunks_.clear();
      total_ = 0;
    }
    index_ = 0;
    cur_ = chunks_.empty() ? nullptr : chunks_[0].data.get();
    left_ = chunks_.empty() ? 0 : chunks_[0].size;
    last_ = nullptr;
  }
  void* alloc(std::size_t n) {
    n = (n + 15) & ~std::size_t{15};
    if (n + 16 > left_) next_chunk(n + 16);
    char* p = cur_ + 16;
    std::memcpy(cur_, &n, sizeof n);
    cur_ += n + 16;
    left_ -= n + 16;
    last_ = p;
    return p;
  }
  void* calloc(std::size_t count, std::size_t size) {
    std::size_t n = count * size;
    void* p = alloc(n);
    std::memset(p, 0, n);
    return p;
  }
  void* realloc(void* ptr, std::size_t n) {
    if (ptr == nullptr) return alloc(n);
    char* p = static_cast<char*>(ptr);
    std::size_t old;
    std::memcpy(&old, p - 16, sizeof old);
    if (n <= old) return ptr;
    std::size_t grown = (n + 15) & ~std::size_t{15};
    if (p == last_ && grown - old <= left_) {  // the newest block: grow it in place
      cur_ += grown - old;
      left_ -= grown - old;
      std::memcpy(p - 16, &grown, sizeof grown);
      return p;
    }
    void* q = alloc(n);
    std::memcpy(q, p, old);
    return q;
  }

 private:
  static constexpr std::size_t kChunk = std::size_t{256} * 1024;
  static constexpr std::size_t kKeep = std::size_t{16} * 1024 * 1024;
  struct Chunk {
    std::unique_ptr<char[]> data;
    std::size_t size = 0;
  };
  // Moves to the next kept chunk that fits `need`, or adds one.
  void next_chunk(std::size_t need) {
    std::size_t i = chunks_.empty() ? 0 : index_ + 1;
    while (i < chunks_.size() && chunks_[i].size < need) ++i;
    if (i >= chunks_.size()) {
      std::size_t size = std::max(kChunk, need);
      chunks_.push_back(Chunk{std::make_unique_for_overwrite<char[]>(size), size});
      total_ += size;
      i = chunks_.size() - 1;
    }
    index_ = i;
    cur_ = chunks_[i].data.get();
    left_ = chunks_[i].size;
  }
  std::vector<Chunk> chunks_;
  std::size_t index_ = 0;
  std::size_t total_ = 0;
  char* cur_ = nullptr;
  std::size_t left_ = 0;
  char* last_ = nullptr;
};

thread_local BumpArena bump;
void* bump_calloc(std::size_t count, std::size_t size) {
  return bump.calloc(count, size);
}
void* bump_realloc(void* p, std::size_t size) {
  return bump.realloc(p, size);
}
void bump_free(void*) {}
cmark_mem bump_mem = {bump_calloc, bump_realloc, bump_free};

struct ParserDeleter {
  void operator()(cmark_parser* p) const { cmark_parser_free(p); }
};
struct IterDeleter {
  void operator()(cmark_iter* i) const { cmark_iter_free(i); }
};

cmark_syntax_extension* table_extension() {
  // Registration touches a global list; do it once.
  static std::once_flag once;
  static cmark_syntax_extension* table = nullptr;
  std::call_once(once, [] {
    cmark_gfm_core_extensions_ensure_registered();
    table = cmark_find_syntax_extension("table");
  });
  return table;
}

bool type_is(cmark_node* node, const char* name) {
  const char* t = cmark_node_get_type_string(node);
  return t != nullptr && std::strcmp(t, name) == 0;
}

// The text of a node and its children; soft breaks become `soft_break`.
void collect_text(cmark_node* node, std::string& out, char soft_break) {
  for (cmark_node* child = cmark_node_first_child(node); child != nullptr;
       child = cmark_node_next(child)) {
    switch (cmark_node_get_type(child)) {
      case CMARK_NODE_TEXT:
      case CMARK_NODE_CODE:
      case CMARK_NODE_HTML_INLINE: {
        const char* lit = cmark_node_get_literal(child);
        if (lit != nullptr) out += lit;
        break;
      }
      case CMARK_NODE_SOFTBREAK:
        out += soft_break;
        break;
      case CMARK_NODE_LINEBREAK:
        out += '\n';
        break;
      default:
        collect_text(child, out, soft_break);
        break;
    }
  }
}

// "num_gpu 99, num_ctx=2048, temperature 0.8" in a heading: settings for what follows.
void settings_in(std::string_view text, Context& c, Arena& arena) {
  thread_local std::vector<std::string_view> words;  // kept: a heading per call
  words.clear();
  std::size_t start = 0;
  while (start < text.size()) {
    static constexpr ByteSet kSeparators(" \t()[],;=`*");
    auto end = kSeparators.find_in(text, start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) words.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  for (std::size_t i = 0; i + 1 < words.size(); ++i) {
    const auto& info = classify_name(words[i]);  // valid until the next classify_name
    if (info.role != Role::context_main || info.field == Field::model) continue;
    const Field field = info.field;
    double v;
    std::string_view unit;
    if (parse_number(words[i + 1], &v, &unit) && unit.empty())
      set_context(c, field, words[i + 1], arena);
  }
}

struct Section {
  int level = 0;
  Context context;
};

// Empties a context and keeps its `extra` vector's capacity for the next use.
void clear_context(Context& c) {
  auto extra = std::move(c.extra);
  extra.clear();
  c = Context{};
  c.extra = std::move(extra);
}

// The sink's working state, kept per thread from document to document: a document's headings
// copy their parent's context into sections whose vectors already have room, instead of
// allocating them per heading (a quarter of all Markdown allocations on the generated corpus).
struct SinkScratch {
  std::vector<Section> sections;  // sections[0, depth): the open headings, outermost first
  std::size_t depth = 0;
  RunningContext ctx;
  std::string label;
  std::string text;
};
thread_local SinkScratch sink_scratch;

// What both readers (cmark-gfm's tree and the line scanner) report, in document order, and
// what becomes of it: headings set the context of what follows, paragraph lines are
// harvested, tables become rows. One place, so that the two readers cannot drift apart.
// One sink per document and thread at a time (its state is the thread's SinkScratch).
class MarkdownSink {
 public:
  explicit MarkdownSink(ParseJob& job) : job_(job), arena_(job.arena()), s_(sink_scratch) {
    s_.depth = 0;
    clear_context(s_.ctx.draft);
    s_.ctx.changed();
    s_.label.clear();
  }

  void heading(int level, std::string_view heading_text) {
    while (s_.depth > 0 && s_.sections[s_.depth - 1].level >= level) --s_.depth;
    if (s_.depth == s_.sections.size()) s_.sections.emplace_back();
    Section& s = s_.sections[s_.depth];
    s.level = level;
    if (s_.depth == 0) {
      clear_context(s.context);
    } else {
      s.context = s_.sections[s_.depth - 1].context;  // copy-assigned: reuses `extra`'s room
    }
    ++s_.depth;
    auto heading = trim(heading_text);
    if (auto model = model_like(heading); !model.empty()) {
      set_context(s.context, Field::model, model, arena_);
      s.context.quantization = {};
    }
    if (auto q = quantization_from(heading); !q.empty() && s.context.model.empty())
      set_context(s.context, Field::quantization, q, arena_);
    settings_in(heading, s.context, arena_);
    if (!heading.empty() && heading.size() <= 96) set_extra(s.context, "section", heading, arena_);
    s_.ctx.draft = s.context;
    s_.ctx.changed();
    s_.label.clear();
  }

  // One source line of a paragraph (or a list item's paragraph), as written.
  void paragraph_line(std::string_view l, int line) {
    if (l.find(':') == std::string_view::npos) return;
    if (std::any_of(l.begin(), l.end(), [](char ch) { return ch == '*' || ch == '`'; })) {
      // Emphasis and code marks around a key: "**Tokens/s:** 78.42".
      s_.text.assign(l);
      std::erase_if(s_.text, [](char ch) { return ch == '*' || ch == '`'; });
      l = s_.text;
    }
    harvest_line(l, line, s_.ctx, &s_.label, job_);
  }

  void table(const Table& t) { emit_table(t, s_.ctx.get(arena_), job_); }

 private:
  ParseJob& job_;
  Arena& arena_;
  SinkScratch& s_;
};

// ---- cmark-gfm: every document the scanner does not take -----------------------------------

void parse_with_cmark(std::string_view content, ParseJob& job) {
  auto* table = table_extension();
  bump.reset();
  std::unique_ptr<cmark_parser, ParserDeleter> parser(
      cmark_parser_new_with_mem(CMARK_OPT_DEFAULT, &bump_mem));
  if (table != nullptr) cmark_parser_attach_syntax_extension(parser.get(), table);
  cmark_parser_feed(parser.get(), content.data(), content.size());
  // The tree lives in the bump arena: it is dropped with it, not freed node by node.
  cmark_node* doc = cmark_parser_finish(parser.get());
  if (doc == nullptr) {
    job.error(0, "the Markdown parser returned nothing (out of memory?)", true);
    return;
  }

  std::vector<std::size_t> line_starts{0};
  for (const char* p = content.data();
       const void* nl =
           std::memchr(p, '\n', static_cast<std::size_t>(content.data() + content.size() - p));) {
    p = static_cast<const char*>(nl) + 1;
    line_starts.push_back(static_cast<std::size_t>(p - content.data()));
  }

  MarkdownSink sink(job);
  std::string text;
  std::unique_ptr<cmark_iter, IterDeleter> iter(cmark_iter_new(doc));
  cmark_event_type ev;
  while ((ev = cmark_iter_next(iter.get())) != CMARK_EVENT_DONE) {
    if (ev != CMARK_EVENT_ENTER) continue;
    cmark_node* node = cmark_iter_get_node(iter.get());
    auto type = cmark_node_get_type(node);
    if (type == CMARK_NODE_HEADING) {
      text.clear();
      collect_text(node, text, ' ');
      sink.heading(cmark_node_get_heading_level(node), text);
      cmark_iter_reset(iter.get(), node, CMARK_EVENT_EXIT);
    } else if (type == CMARK_NODE_PARAGRAPH) {
      // Read the paragraph's own source lines: asking cmark for each text node's literal
      // allocates, and the source already has the line numbers.
      int first = cmark_node_get_start_line(node);
      int last = cmark_node_get_end_line(node);
      for (int line = first;
           line <= last && line >= 1 && static_cast<std::size_t>(line) <= line_starts.size();
           ++line) {
        std::size_t b = line_starts[static_cast<std::size_t>(line - 1)];
        std::size_t e = static_cast<std::size_t>(line) < line_starts.size()
                            ? line_starts[static_cast<std::size_t>(line)]
                            : content.size();
        sink.paragraph_line(content.substr(b, e - b), line);
      }
      cmark_iter_reset(iter.get(), node, CMARK_EVENT_EXIT);
    } else if (type == CMARK_NODE_CODE_BLOCK || type == CMARK_NODE_HTML_BLOCK) {
      continue;  // code and HTML: not data
    } else if (type_is(node, "table")) {
      Table t;
      std::deque<std::string> cell_text;
      bool header_done = false;
      for (cmark_node* row = cmark_node_first_child(node); row != nullptr;
           row = cmark_node_next(row)) {
        auto first = static_cast<std::uint32_t>(t.cells.size());
        for (cmark_node* cell = cmark_node_first_child(row); cell != nullptr;
             cell = cmark_node_next(cell)) {
          auto& s = cell_text.emplace_back();
          collect_text(cell, s, ' ');
          t.cells.emplace_back(s);
        }
        auto count = static_cast<std::uint32_t>(t.cells.size() - first);
        if (!header_done) {
          t.header.assign(t.cells.begin() + first, t.cells.end());
          header_done = true;
          continue;
        }
        t.rows.push_back(Table::Row{first, count, cmark_node_get_start_line(row)});
      }
      if (header_done) sink.table(t);
      cmark_iter_reset(iter.get(), node, CMARK_EVENT_EXIT);
    }
  }
}

// ---- the line scanner: the common subset, the same results, no tree ------------------------
//
// cmark-gfm parses every inline of every block into nodes; most benchmark Markdown is headings,
// "Key: value" lines, lists and pipe tables, where a line tells what it is. The scanner reads
// lines, decides each one's block the way CommonMark and GFM's table extension do, and gives up
// (returns false, having emitted nothing) on any construct whose meaning depends on more than
// the line and its neighbours: block quotes, HTML blocks, indented code, setext headings,
// link reference definitions, tables inside lists or after paragraph text, escaped pipes.
// Inline markup in headings and cells (emphasis, code, links, entities) goes through cmark's
// own inline parser on that text alone, so only the cheap, unambiguous part is our own.
// tests/ingest/markdown_scanner_test.cpp and fuzz/markdown_differential_fuzzer.cpp hold it to
// the same records as cmark-gfm.
class LineScanner {
 public:
  explicit LineScanner(std::string_view content) : content_(content), s_(scratch()) {
    // What an unusually large document left behind is not kept for the thread's lifetime.
    if (s_.texts.size() > 4096) s_.texts.clear();
    if (s_.tables.size() > 256) s_.tables.clear();
    s_.events.clear();
    s_.texts_used = 0;
    s_.tables_used = 0;
  }

  // Reads the whole document into events; false: not in the subset (nothing is emitted).
  bool scan() {
    if (!plain_line_endings(content_)) return false;
    std::size_t pos = 0;
    while (pos < content_.size()) {
      Line l = read_line(pos);
      if (!classify(l, pos)) return false;
    }
    return fence_char_ == 0 && !in_comment_;  // unclosed to the end: rare, left to cmark
  }

  void emit(MarkdownSink& sink) const {
    for (const auto& e : s_.events) {
      switch (e.kind) {
        case Event::heading:
          sink.heading(e.level, e.text);
          break;
        case Event::paragraph_line:
          sink.paragraph_line(e.text, e.line);
          break;
        case Event::table:
          sink.table(s_.tables[e.table_index]);
          break;
      }
    }
  }

 private:
  struct Line {
    std::string_view raw;   // as written, with its line ending (what cmark's path harvests)
    std::string_view body;  // without the line ending
    int number = 0;
  };
  struct Event {
    enum Kind : std::uint8_t { heading, paragraph_line, table } kind;
    int level = 0;
    std::size_t table_index = 0;  // table: into the scratch's tables
    std::string_view text;        // heading: its text; paragraph line: the line as written
    int line = 0;
  };

  Line read_line(std::size_t& pos) {
    Line l;
    l.number = ++line_no_;
    std::size_t nl = content_.find('\n', pos);
    std::size_t end = nl == std::string_view::npos ? content_.size() : nl + 1;
    l.raw = content_.substr(pos, end - pos);
    l.body = l.raw;
    if (!l.body.empty() && l.body.back() == '\n') l.body.remove_suffix(1);
    if (!l.body.empty() && l.body.back() == '\r') l.body.remove_suffix(1);
    pos = end;
    return l;
  }
  // A lone carriage return is a line ending to CommonMark, and vertical tabs and form feeds are
  // white space in some of cmark's rules and text in others: a document with any of them
  // (other than the \r of a \r\n, or a last \r) is left to cmark. Checked once per document
  // with memchr, not byte by byte on every line (6% of all ingest instructions): the scan reads
  // every line before it succeeds, so a line with one would fail it either way.
  static bool plain_line_endings(std::string_view s) {
    if (s.find('\v') != std::string_view::npos || s.find('\f') != std::string_view::npos)
      return false;
    for (std::size_t at = s.find('\r'); at != std::string_view::npos; at = s.find('\r', at + 1))
      if (at + 1 < s.size() && s[at + 1] != '\n') return false;
    return true;
  }
  std::optional<Line> peek_line(std::size_t pos) {
    if (pos >= content_.size()) return std::nullopt;
    int saved = line_no_;
    Line l = read_line(pos);
    line_no_ = saved;
    return l;
  }
  Line take_line(std::size_t& pos) { return read_line(pos); }

  static bool blank(std::string_view s) {
    return s.find_first_not_of(" \t") == std::string_view::npos;
  }
  // Leading spaces; -1 when a tab comes before the first other character (tab stops: cmark).
  static int indent_of(std::string_view s) {
    int n = 0;
    for (char c : s) {
      if (c == ' ') {
        ++n;
      } else if (c == '\t') {
        return -1;
      } else {
        break;
      }
    }
    return n;
  }
  // A thematic break: three or more of one of - * _, with spaces between.
  static bool thematic_break(std::string_view s, char* which) {
    char mark = 0;
    int count = 0;
    for (char c : s) {
      if (c == ' ' || c == '\t') continue;
      if (c != '-' && c != '*' && c != '_') return false;
      if (mark == 0) mark = c;
      if (c != mark) return false;
      ++count;
    }
    *which = mark;
    return count >= 3;
  }
  // Only '|', ':', '-' and spaces, with a '-': a table's delimiter row (or part of one).
  static bool delimiter_like(std::string_view s) {
    bool dash = false;
    bool mark = false;
    for (char c : s) {
      if (c == '-') {
        dash = true;
      } else if (c == '|' || c == ':') {
        mark = true;
      } else if (c != ' ' && c != '\t') {
        return false;
      }
    }
    return dash && mark;
  }
  // Spaces and tabs off both ends: GFM's white space in rows (not \v or \f, which trim() takes).
  static std::string_view trim_blanks(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  }
  // The cells of a pipe-table row, trimmed; false on an escaped pipe or a row of no cells (left
  // to cmark).
  static bool split_row(std::string_view s, std::vector<std::string_view>& cells) {
    cells.clear();
    s = trim_blanks(s);
    // (No \v or \f, which cmark-gfm reads its own way: plain_line_endings() left such
    // documents to it.)
    if (s.find('\\') != std::string_view::npos) return false;
    if (!s.empty() && s.front() == '|') s.remove_prefix(1);
    // A lone pipe is a row of no cells: cmark-gfm ends a table there and makes it paragraph text.
    if (s.empty()) return false;
    if (s.back() == '|') s.remove_suffix(1);
    std::size_t start = 0;
    while (true) {
      std::size_t bar = s.find('|', start);
      cells.push_back(
          trim_blanks(s.substr(start, bar == std::string_view::npos ? bar : bar - start)));
      if (bar == std::string_view::npos) break;
      start = bar + 1;
    }
    return true;
  }
  static bool delimiter_cell(std::string_view c) {
    if (!c.empty() && c.front() == ':') c.remove_prefix(1);
    if (!c.empty() && c.back() == ':') c.remove_suffix(1);
    return !c.empty() && c.find_first_not_of('-') == std::string_view::npos;
  }
  // Text that has no inline markup reads as written; otherwise cmark's inline parser reads it.
  // False when the text would not be one paragraph on its own (then cmark reads the document).
  // Whether s[i] may start inline markup (emphasis, code, links, entities, escapes, raw HTML).
  static bool markup_at(std::string_view s, std::size_t i) {
    auto word = [](char ch) {
      return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             static_cast<unsigned char>(ch) >= 0x80;
    };
    const char c = s[i];
    if (c == '*' || c == '`' || c == '[' || c == '<' || c == '&' || c == '\\') return true;
    if (c == '!') return i + 1 < s.size() && s[i + 1] == '[';
    // Inside a word ("num_ctx") an underscore is literal; at a word's edge it may emphasise.
    if (c == '_') return i == 0 || i + 1 == s.size() || !word(s[i - 1]) || !word(s[i + 1]);
    return false;
  }
  // The position of the first character that may start inline markup; npos when none.
  static std::size_t first_markup(std::string_view s) {
    // The bytes markup_at() may say yes to: one lookup per byte for the rest (most of a cell).
    static constexpr ByteSet kMayStart("*`[<&\\!_");
    for (std::size_t i = 0; i < s.size(); ++i)
      if (kMayStart.has(s[i]) && markup_at(s, i)) return i;
    return std::string_view::npos;
  }
  static bool ascii_punct(char c) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') ||
           (c >= '{' && c <= '~');
  }
  static bool space_like(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  }
  // The markup benchmark tables are full of, read as CommonMark reads it: `code` spans and
  // *emphasis* or **strong** runs around plain text whose delimiters can only open or only
  // close (CommonMark's flanking rules; a run that could do both is left to cmark, as is any
  // other markup and any delimiter next to a non-ASCII character).
  static bool simple_markup(std::string_view s, std::string& out) {
    auto at = [&](std::size_t i) { return i < s.size() ? s[i] : '\n'; };
    auto before = [&](std::size_t i) { return i == 0 ? '\n' : s[i - 1]; };
    auto flanks = [&](char prev, char next, bool* left, bool* right) {
      if (static_cast<unsigned char>(prev) >= 0x80 || static_cast<unsigned char>(next) >= 0x80)
        return false;
      *left = !space_like(next) && (!ascii_punct(next) || space_like(prev) || ascii_punct(prev));
      *right = !space_like(prev) && (!ascii_punct(prev) || space_like(next) || ascii_punct(next));
      return true;
    };
    auto run = [&](std::size_t i, char c) {
      std::size_t j = i;
      while (j < s.size() && s[j] == c) ++j;
      return j - i;
    };
    std::size_t i = 0;
    while (i < s.size()) {
      const char c = s[i];
      if (c == '`') {
        const std::size_t n = run(i, '`');
        std::size_t j = i + n;
        std::size_t close = std::string_view::npos;
        while (j < s.size()) {
          if (s[j] != '`') {
            ++j;
            continue;
          }
          const std::size_t k = run(j, '`');
          if (k == n) {
            close = j;
            break;
          }
          j += k;
        }
        if (close == std::string_view::npos) return false;
        std::string_view code = s.substr(i + n, close - i - n);
        if (code.size() >= 2 && code.front() == ' ' && code.back() == ' ' &&
            code.find_first_not_of(' ') != std::string_view::npos)
          code = code.substr(1, code.size() - 2);
        out += code;
        i = close + n;
        continue;
      }
      if (c == '*') {
        const std::size_t n = run(i, '*');
        bool left = false, right = false;
        if (n > 2 || !flanks(before(i), at(i + n), &left, &right) || !left || right) return false;
        const std::size_t j = s.find('*', i + n);
        if (j == std::string_view::npos || run(j, '*') != n) return false;
        std::string_view inner = s.substr(i + n, j - i - n);
        for (std::size_t k = i + n; k < j; ++k)
          if (markup_at(s, k)) return false;
        if (!flanks(before(j), at(j + n), &left, &right) || !right || left) return false;
        out += inner;
        i = j + n;
        continue;
      }
      if (markup_at(s, i)) return false;
      out += c;
      ++i;
    }
    return true;
  }

  // The text of a heading or a cell as cmark's inline parser reads it. Text before the first
  // markup, up to a space, is literal (nothing in it opens a construct, and after a space the
  // rest is parsed as at a line's start); the rest goes through cmark alone. False when the rest
  // would not be one paragraph on its own (then cmark reads the document).
  // inline_text() as a view: into the document when the text has no markup (most cells),
  // else into text kept by the scanner.
  bool inline_view(std::string_view s, std::string_view* out) {
    if (first_markup(s) == std::string_view::npos) {
      *out = s;
      return true;
    }
    auto& kept = next_text();
    if (!inline_text(s, kept)) return false;
    *out = kept;
    return true;
  }
  bool inline_text(std::string_view s, std::string& out) {
    out.clear();
    std::size_t m = first_markup(s);
    if (m == std::string_view::npos) {
      out.assign(s);
      return true;
    }
    if (simple_markup(s, out)) return true;
    out.clear();
    std::size_t space = s.find_last_of(" \t", m);
    std::size_t split = space == std::string_view::npos ? 0 : space + 1;
    out.assign(s.substr(0, split));
    std::string_view rest = s.substr(split);
    // cmark drops a byte-order mark that starts what it is fed; inside a line it is text.
    if (rest.starts_with("\xEF\xBB\xBF")) return false;
    std::unique_ptr<cmark_parser, ParserDeleter> parser(
        cmark_parser_new_with_mem(CMARK_OPT_DEFAULT, &bump_mem));
    cmark_parser_feed(parser.get(), rest.data(), rest.size());
    cmark_node* doc = cmark_parser_finish(parser.get());
    if (doc == nullptr) return false;
    cmark_node* para = cmark_node_first_child(doc);
    if (para == nullptr || cmark_node_next(para) != nullptr ||
        cmark_node_get_type(para) != CMARK_NODE_PARAGRAPH)
      return false;
    collect_text(para, out, ' ');
    return true;
  }

  // Decides what `l` is; may read further lines (a table's rows, a fence's body).
  bool classify(const Line& l, std::size_t& pos) {
    std::string_view b = l.body;
    // cmark-gfm skips a byte-order mark at the start of what it is fed (after the one ingestion
    // takes off every file): the first line's blocks are read without it, its text keeps it.
    if (l.number == 1 && b.starts_with("\xEF\xBB\xBF")) b.remove_prefix(3);
    if (in_comment_) {  // inside an HTML comment: skip to its end
      in_comment_ = b.find("-->") == std::string_view::npos;
      return true;
    }
    if (fence_char_ != 0) {  // inside fenced code: skip to the closing fence
      int ind = indent_of(b);
      if (ind >= 0 && ind <= 3) {
        std::string_view t = b.substr(static_cast<std::size_t>(ind));
        std::size_t n = t.find_first_not_of(fence_char_);
        if (n == std::string_view::npos) n = t.size();
        if (n >= fence_len_ && blank(t.substr(n))) fence_char_ = 0;
      }
      paragraph_open_ = false;
      return true;
    }
    if (blank(b)) {
      paragraph_open_ = false;
      return true;
    }
    int ind = indent_of(b);
    if (ind < 0) return false;  // tabs in the indentation: cmark's tab stops
    if (ind >= 4) {
      if (!paragraph_open_) return false;  // indented code, or a list's continuation
      // In a list item the line may start a block of the item's own (a heading, an underline,
      // a quote): only plain text is read as the paragraph's continuation here.
      std::string_view rest = trim_blanks(b);
      if (rest.front() == '>' || list_marker(rest) > 0 || !container_content_ok(rest)) return false;
      return paragraph(l);  // a paragraph's continuation line
    }
    std::string_view t = b.substr(static_cast<std::size_t>(ind));
    const char c = t.front();
    // Fenced code.
    if (c == '`' || c == '~') {
      std::size_t n = t.find_first_not_of(c);
      if (n == std::string_view::npos) n = t.size();
      if (n >= 3) {
        if (ind != 0) return false;
        if (c == '`' && t.substr(n).find('`') != std::string_view::npos) return false;
        fence_char_ = c;
        fence_len_ = n;
        paragraph_open_ = false;
        return true;
      }
    }
    // An HTML comment is skipped to its end, like cmark's HTML block of that kind.
    if (t.starts_with("<!--")) {
      // The end may overlap the start ("<!-->"): the line contains "-->", as cmark checks it.
      in_comment_ = t.find("-->", 2) == std::string_view::npos;
      paragraph_open_ = false;
      return true;
    }
    // A block quote holding a paragraph: its lines are paragraph lines, as written.
    if (c == '>') {
      if (!container_content_ok(quote_content(t))) return false;
      paragraph_open_ = !blank(quote_content(t));
      if (paragraph_open_) s_.events.push_back(Event{Event::paragraph_line, 0, 0, l.raw, l.number});
      return true;
    }
    // Blocks left to cmark.
    if (c == '<' || (c == '|' && ind != 0) || link_definition(t)) return false;
    if (c == '=' && paragraph_open_) return false;  // a setext underline
    // One or two dashes under a paragraph underline it too (three are a thematic break, below).
    if (c == '-' && paragraph_open_ &&
        trim_blanks(t).find_first_not_of('-') == std::string_view::npos)
      return false;
    char mark = 0;
    if (thematic_break(t, &mark)) {
      if (mark == '-' && paragraph_open_) return false;  // a setext underline
      paragraph_open_ = false;
      return true;
    }
    if (delimiter_like(t)) return false;  // a delimiter row that does not follow a header
    // ATX heading.
    if (atx_heading(t)) {
      if (ind != 0) return false;
      const std::size_t n = std::min(t.find_first_not_of('#'), t.size());
      return heading(static_cast<int>(n), t.substr(n), l.number);
    }
    // A list item whose content starts a block of its own: left to cmark.
    // An empty list item takes the indented lines after it as its content: left to cmark too,
    // with or without a blank after its marker ("-", "1.").
    if (std::string_view bare = trim_blanks(t);
        bare == "-" || bare == "*" || bare == "+" ||
        (bare.size() >= 2 && (bare.back() == '.' || bare.back() == ')') &&
         bare.find_first_not_of("0123456789") == bare.size() - 1 && bare.size() <= 10))
      return false;
    if (std::size_t m = list_marker(t);
        m > 0 && (t[m - 1] == '\t' || blank(t.substr(m)) || !container_content_ok(t.substr(m))))
      return false;
    // A pipe table: a header row, then a delimiter row with as many cells.
    if (t.find('|') != std::string_view::npos) {
      if (auto next = peek_line(pos); next && delimiter_like(trim_blanks(next->body))) {
        if (ind != 0) return false;
        // A delimiter row that reads as a list item ("- |") starts a list in cmark-gfm: the
        // block starts are tried before the table extension.
        if (list_marker(trim_blanks(next->body)) > 0) return false;
        // An indented delimiter row (a tab is four columns) is left to cmark, as its rows are.
        if (indent_of(next->body) != 0) return false;
        auto& header = s_.header;
        auto& delimiter = s_.delimiter;
        if (!split_row(b, header) || !split_row(next->body, delimiter)) return false;
        // After a list item's line the delimiter row is a lazy continuation of its paragraph;
        // with a cell count unlike the header's it is no table either: paragraph lines, both.
        if (list_marker(t) > 0 || header.size() != delimiter.size()) {
          paragraph(l);
          Line d = take_line(pos);
          return paragraph(d);
        }
        // Paragraph text right above a table: cmark-gfm splits it off without a source line.
        if (paragraph_open_) return false;
        return table(l, pos);
      }
    }
    return paragraph(l);
  }

  // What follows "> " (the marker and one optional space).
  static std::string_view quote_content(std::string_view t) {
    t.remove_prefix(1);
    if (!t.empty() && t.front() == ' ') t.remove_prefix(1);
    return t;
  }
  // The content of a list item or a block quote (after its marker) is a paragraph, or a quote
  // or list item holding one: anything else (a heading, code, HTML, a table, a break) is left
  // to cmark.
  static bool container_content_ok(std::string_view after_marker) {
    for (int depth = 0; depth < 16; ++depth) {
      int ind = indent_of(after_marker);
      if (ind < 0 || ind >= 4) return false;  // a tab, or indented code inside
      std::string_view rest = after_marker.substr(static_cast<std::size_t>(ind));
      if (blank(rest)) return true;
      char mark = 0;
      if (atx_heading(rest) || rest.front() == '<' || rest.front() == '|' ||
          link_definition(rest) || rest.starts_with("```") || rest.starts_with("~~~") ||
          thematic_break(rest, &mark) || delimiter_like(rest) || rest.front() == '=' ||
          trim_blanks(rest).find_first_not_of('-') == std::string_view::npos)  // an underline
        return false;
      if (rest.front() == '>') {
        after_marker = quote_content(rest);
      } else if (std::size_t m = list_marker(rest); m > 0) {
        // A tab after the marker counts to the next tab stop: maybe code, as cmark sees it.
        if (rest[m - 1] == '\t' || blank(rest.substr(m))) return false;
        after_marker = rest.substr(m);
      } else {
        return true;
      }
    }
    return false;
  }

  // "#" to "######" followed by a space, a tab or the end of the line.
  static bool atx_heading(std::string_view t) {
    std::size_t n = t.find_first_not_of('#');
    if (n == std::string_view::npos) n = t.size();
    return n >= 1 && n <= 6 && (n == t.size() || t[n] == ' ' || t[n] == '\t');
  }

  // "[label]: ..." may define a link reference (not a paragraph); a '[' with no ']' on its line
  // may start a label that spans lines. Both are left to cmark.
  static bool link_definition(std::string_view t) {
    if (t.empty() || t.front() != '[') return false;
    std::size_t close = t.find(']');
    return close == std::string_view::npos || (close + 1 < t.size() && t[close + 1] == ':');
  }

  // "- ", "* ", "+ ", "1. ", "1) ": the marker's length with its space; 0 when none.
  static std::size_t list_marker(std::string_view t) {
    if (t.size() >= 2 && (t[0] == '-' || t[0] == '*' || t[0] == '+') &&
        (t[1] == ' ' || t[1] == '\t'))
      return 2;
    std::size_t d = 0;
    while (d < t.size() && d < 9 && t[d] >= '0' && t[d] <= '9') ++d;
    if (d > 0 && d + 1 < t.size() && (t[d] == '.' || t[d] == ')') &&
        (t[d + 1] == ' ' || t[d + 1] == '\t'))
      return d + 2;
    return 0;
  }

  bool paragraph(const Line& l) {
    paragraph_open_ = true;
    s_.events.push_back(Event{Event::paragraph_line, 0, 0, l.raw, l.number});
    return true;
  }

  bool heading(int level, std::string_view rest, int line) {
    // Closing sequence: trailing '#'s after a space (or the whole text).
    std::string_view text = trim_blanks(rest);
    std::size_t h = text.find_last_not_of('#');
    if (h == std::string_view::npos) {
      text = {};
    } else if (h + 1 < text.size() && (text[h] == ' ' || text[h] == '\t')) {
      text = trim_blanks(text.substr(0, h + 1));
    }
    std::string_view out;
    if (!inline_view(text, &out)) return false;
    s_.events.push_back(Event{Event::heading, level, 0, out, line});
    paragraph_open_ = false;
    return true;
  }

  bool table(const Line& header, std::size_t& pos) {
    auto& cells = s_.row;
    if (!split_row(header.body, cells)) return false;
    const std::size_t columns = cells.size();
    Line delim = take_line(pos);
    auto& dcells = s_.delimiter;
    if (!split_row(delim.body, dcells) || dcells.size() != columns) return false;
    for (auto d : dcells)
      if (!delimiter_cell(d)) return false;

    Table& t = next_table();
    auto add_row = [&](const std::vector<std::string_view>& row) {
      // GFM: missing cells are empty, extra cells are dropped.
      for (std::size_t i = 0; i < columns; ++i) {
        std::string_view cell;
        if (i < row.size() && !inline_view(row[i], &cell)) return false;
        t.cells.push_back(cell);
      }
      return true;
    };
    if (!add_row(cells)) return false;
    t.header.assign(t.cells.begin(), t.cells.end());
    t.cells.clear();
    while (pos < content_.size()) {
      std::size_t at = pos;
      Line r = take_line(pos);
      if (blank(r.body)) {
        paragraph_open_ = false;
        break;
      }
      int ind = indent_of(r.body);
      std::string_view rt =
          ind < 0 ? std::string_view{} : r.body.substr(static_cast<std::size_t>(ind));
      // A heading (pipes or not) or a thematic break ends the table; read again on its own.
      char mark = 0;
      if (ind == 0 && (atx_heading(rt) || thematic_break(rt, &mark))) {
        pos = at;
        --line_no_;
        break;
      }
      // A row without a pipe: what cmark does depends on it.
      if (ind != 0 || rt.find('|') == std::string_view::npos) return false;
      // A line that starts a block (a list item, a quote, code, HTML) ends the table in cmark.
      if (rt.front() == '>' || rt.front() == '`' || rt.front() == '~' || rt.front() == '<' ||
          list_marker(rt) > 0)
        return false;
      if (!split_row(r.body, cells)) return false;
      auto first = static_cast<std::uint32_t>(t.cells.size());
      if (!add_row(cells)) return false;
      t.rows.push_back(Table::Row{first, static_cast<std::uint32_t>(columns), r.number});
    }
    s_.events.push_back(Event{Event::table, 0, s_.tables_used - 1, {}, header.number});
    paragraph_open_ = false;
    return true;
  }

  std::string_view content_;
  int line_no_ = 0;
  bool paragraph_open_ = false;  // the previous line was paragraph text (lazy continuation)
  char fence_char_ = 0;          // inside fenced code: its fence character
  bool in_comment_ = false;      // inside an HTML comment
  std::size_t fence_len_ = 0;
  // The scanner's working storage, kept per thread from document to document: events,
  // tables and texts reuse the previous document's capacity (per-document vectors were a
  // third of all Markdown allocations on the generated corpus). Only the first `*_used`
  // tables and texts belong to the current document.
  struct Scratch {
    std::vector<Event> events;
    std::deque<std::string> texts;  // headings' and cells' text read from markup; views point here
    std::size_t texts_used = 0;
    std::deque<Table> tables;
    std::size_t tables_used = 0;
    std::vector<std::string_view> header, delimiter, row;  // split_row()'s cells
  };
  static Scratch& scratch() {
    thread_local Scratch s;
    return s;
  }
  // A text for the current document (a deque: earlier texts never move).
  std::string& next_text() {
    if (s_.texts_used == s_.texts.size()) s_.texts.emplace_back();
    std::string& t = s_.texts[s_.texts_used++];
    t.clear();
    return t;
  }
  Table& next_table() {
    if (s_.tables_used == s_.tables.size()) s_.tables.emplace_back();
    Table& t = s_.tables[s_.tables_used++];
    t.header.clear();
    t.units.clear();
    t.cells.clear();
    t.rows.clear();
    return t;
  }

  Scratch& s_;
};

}  // namespace

void parse_markdown(std::string_view content, ParseJob& job) {
  if (job.options == nullptr || job.options->markdown_fast_path) {
    bump.reset();
    LineScanner scanner(content);
    if (scanner.scan()) {
      MarkdownSink sink(job);
      scanner.emit(sink);
      return;
    }
  }
  parse_with_cmark(content, job);
}

bool markdown_scanner_takes(std::string_view content) {
  bump.reset();
  LineScanner scanner(content);
  return scanner.scan();
}

}  // namespace chimera::ingest::detail
