// Markdown read by the line scanner and by cmark-gfm must give the same records, error values
// and errors (IngestOptions::markdown_fast_path on and off). Aborts on the first difference.
#include <chimera/ingest/ingest.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <string_view>

namespace {

namespace ci = chimera::ingest;

std::string dump(const ci::IngestResult& r) {
  std::ostringstream o;
  o.precision(17);
  auto ctx = [&](const ci::Context* c) {
    if (c == nullptr) return;
    o << c->model << '|' << c->quantization << '|' << c->num_gpu << '|' << c->num_ctx << '|'
      << c->temperature << '|' << c->run;
    for (const auto& [k, v] : c->extra) o << '|' << k << '=' << v;
  };
  for (const auto& rec : r.records) {
    o << "R " << rec.line << ' ' << rec.metric << '=' << rec.value << ' ' << rec.unit << ' '
      << rec.origin << ' ';
    ctx(rec.context);
    o << '\n';
  }
  for (const auto& e : r.error_values) {
    o << "E " << e.line << ' ' << e.metric << ' ' << e.text << ' ';
    ctx(e.context);
    o << '\n';
  }
  for (const auto& e : r.errors) o << "F " << e.line << ' ' << e.reason << '\n';
  for (const auto& f : r.files) o << "I " << f.rows << '\n';
  return o.str();
}

std::string through(std::string_view doc, bool fast) {
  ci::IngestOptions opts;
  opts.threads = 1;
  opts.max_line_bytes = 512;
  opts.markdown_fast_path = fast;
  return dump(ci::ingest_buffer(doc, ci::FileType::markdown, "fuzz.md", opts));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view doc(reinterpret_cast<const char*>(data), size);
  const std::string fast = through(doc, true);
  const std::string reference = through(doc, false);
  if (fast != reference) {
    std::fprintf(stderr, "the line scanner and cmark-gfm differ\n-- scanner:\n%s-- cmark-gfm:\n%s",
                 fast.c_str(), reference.c_str());
    std::abort();
  }
  return 0;
}
