# sg_decide_lua.cmake - embed policy/sg_decide.lua as a C string.
#
# sg_embed_decide_lua(<target>) generates <binary dir>/sg_decide_lua.h,
#   static const char sg_decide_lua[] = { ...bytes..., 0 };
# at configure time (editing the .lua re-runs cmake), and adds that
# directory to the target's include path. The script stays readable in
# the source tree; the C file compiles it in.
set(SG_DECIDE_LUA_SRC ${CMAKE_CURRENT_LIST_DIR}/sg_decide.lua)

function(sg_embed_decide_lua target)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/sg_embed/sg_decide_lua.h)
  file(READ ${SG_DECIDE_LUA_SRC} hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
  string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
  file(CONFIGURE OUTPUT ${out} CONTENT
"/* generated from policy/sg_decide.lua by sg_decide_lua.cmake: do not edit */
static const char sg_decide_lua[] = {
@bytes@0x00 };
" @ONLY)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${SG_DECIDE_LUA_SRC})
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/sg_embed)
endfunction()
