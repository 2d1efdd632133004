/*
 * sg_trace_internal.h - what the files of the sg_trace module share
 * (sg_trace.c, sg_trace_match.c); not for other modules.
 */
#ifndef SG_TRACE_INTERNAL_H
#define SG_TRACE_INTERNAL_H

#include <stddef.h>

/* n bytes of s into dst (size): spaces trimmed, cut, NUL-terminated. */
void sg_trace_copy(char *dst, size_t size, const char *s, size_t n);
/* A Message-ID's content (inside its first <...>, spaces removed) into dst. */
void sg_trace_msgid(char *dst, size_t size, const char *v, size_t n);

#endif
