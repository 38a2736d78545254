/* Force-included into every source of the fuzz build (fuzz/CMakeLists.txt).
 *
 * toml++ 3.3 checks some of its own parser states with assert() in builds without NDEBUG, and
 * one of those checks is reachable from input: a table header with no key ("[[=" or "[ =")
 * aborts in parse_key() before the parser's own error ("expected bare key starting character
 * or string delimiter"), which is what a release build reports. The fuzz build keeps the
 * project's assertions (no NDEBUG), so it turns off toml++'s alone, to fuzz what users run. */
#define TOML_ASSERT(expr) ((void)0)
