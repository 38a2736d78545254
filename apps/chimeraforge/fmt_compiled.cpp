// fmt's compiled part (the functions libfmt.so exports), built into the program so that the CLI
// needs no libfmt.so at run time: one shared library less to map and relocate at every start.
// Debian's libfmt-dev ships no static archive, only the headers and the shared library; its
// format-inl.h holds the definitions, and the explicit instantiations below are the templates
// the project's code calls that fmt's headers declare `extern`.
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {
template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template FMT_API auto locale_ref::get<std::locale>() const -> std::locale;
template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
}  // namespace detail
FMT_END_NAMESPACE
