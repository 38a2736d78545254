// Markdown through cmark-gfm with the table extension: tables become rows (the CSV column
// rules), headings set the context of what follows them, and "Key: 12.3 unit" lines in
// paragraphs and list items are harvested. Line numbers are cmark's source positions.
#include <cmark-gfm-core-extensions.h>
#include <cmark-gfm-extension_api.h>
#include <cmark-gfm.h>

#include <algorithm>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>

#include "ingest/internal.hpp"

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
  std::vector<std::string_view> words;
  std::size_t start = 0;
  while (start < text.size()) {
    auto end = text.find_first_of(" \t()[],;=`*", start);
    if (end == std::string_view::npos) end = text.size();
    if (end > start) words.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  for (std::size_t i = 0; i + 1 < words.size(); ++i) {
    auto info = classify_name(words[i]);
    if (info.role != Role::context_main || info.field == Field::model) continue;
    double v;
    std::string_view unit;
    if (parse_number(words[i + 1], &v, &unit) && unit.empty())
      set_context(c, info.field, words[i + 1], arena);
  }
}

struct Section {
  int level = 0;
  Context context;
};

}  // namespace

void parse_markdown(std::string_view content, ParseJob& job) {
  Arena& arena = job.arena();
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

  std::vector<Section> sections;  // the open headings, outermost first
  RunningContext ctx;
  std::string label;
  std::string text;
  std::unique_ptr<cmark_iter, IterDeleter> iter(cmark_iter_new(doc));
  cmark_event_type ev;
  while ((ev = cmark_iter_next(iter.get())) != CMARK_EVENT_DONE) {
    if (ev != CMARK_EVENT_ENTER) continue;
    cmark_node* node = cmark_iter_get_node(iter.get());
    auto type = cmark_node_get_type(node);
    if (type == CMARK_NODE_HEADING) {
      int level = cmark_node_get_heading_level(node);
      while (!sections.empty() && sections.back().level >= level) sections.pop_back();
      text.clear();
      collect_text(node, text, ' ');
      Section s;
      s.level = level;
      s.context = sections.empty() ? Context{} : sections.back().context;
      auto heading = trim(text);
      if (auto model = model_like(heading); !model.empty()) {
        set_context(s.context, Field::model, model, arena);
        s.context.quantization = {};
      }
      if (auto q = quantization_from(heading); !q.empty() && s.context.model.empty())
        set_context(s.context, Field::quantization, q, arena);
      settings_in(heading, s.context, arena);
      if (!heading.empty() && heading.size() <= 96) set_extra(s.context, "section", heading, arena);
      sections.push_back(std::move(s));
      ctx.draft = sections.back().context;
      ctx.changed();
      label.clear();
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
        std::string_view l = content.substr(b, e - b);
        if (l.find(':') == std::string_view::npos) continue;
        if (l.find_first_of("*`") != std::string_view::npos) {
          // Emphasis and code marks around a key: "**Tokens/s:** 78.42".
          text.assign(l);
          std::erase_if(text, [](char ch) { return ch == '*' || ch == '`'; });
          l = text;
        }
        harvest_line(l, line, ctx, &label, job);
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
      if (header_done) emit_table(t, ctx.get(arena), job);
      cmark_iter_reset(iter.get(), node, CMARK_EVENT_EXIT);
    }
  }
}

}  // namespace chimera::ingest::detail
