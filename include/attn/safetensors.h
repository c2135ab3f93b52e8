/* libattn: a strict safetensors reader and writer.
 *
 * Format (https://github.com/huggingface/safetensors): an 8-byte little-endian unsigned header
 * length N, N bytes of UTF-8 JSON, then the data region. The JSON is one object; each member except
 * "__metadata__" is a tensor {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]} with
 * offsets relative to the data region; "__metadata__", if present, maps strings to strings.
 *
 * The reader validates everything before handing out a pointer, and reports a malformed file as
 * ATTN_STATUS_INVALID_ARGUMENT (ATTN_STATUS_OVERFLOW for sizes that overflow) with attn_last_error()
 * naming the file and the problem, never a crash:
 *   - file at least 8 bytes; N <= ATTN_ST_MAX_HEADER (100 MB) and 8 + N <= file size;
 *   - the header is strict JSON (valid UTF-8, nesting <= 64), an object starting with '{';
 *   - every tensor has exactly the keys dtype, shape, data_offsets; dtype one of F64 F32 F16 BF16
 *     I64 I32 I16 I8 U8 BOOL; rank <= ATTN_ST_MAX_DIMS; dims integers >= 0 whose product times the
 *     dtype size does not overflow; offsets integers with begin <= end;
 *   - end - begin == element count x dtype size;
 *   - the tensors' byte ranges do not overlap and together cover the data region exactly (no gaps,
 *     nothing past the end of the file);
 *   - no two tensors share a name; names are non-empty;
 *   - "__metadata__" values are strings.
 *
 * Memory: attn_st_open maps the file read-only (mmap) or, where mapping fails, reads it into a
 * buffer from the allocator hook. Tensor data pointers stay valid until attn_st_close. The data of
 * a tensor is aligned as its offset in the file is: attn_st_write (and the usual writers) align every
 * tensor to its element size, but a foreign file may hand out misaligned pointers; check.
 *
 * Thread safety: an open file is read-only; any number of threads may query it concurrently. */
#ifndef ATTN_SAFETENSORS_H
#define ATTN_SAFETENSORS_H

#include "attn.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATTN_ST_MAX_DIMS 8
#define ATTN_ST_MAX_HEADER ((uint64_t)100 * 1000 * 1000)

typedef enum attn_st_dtype {
  ATTN_ST_F64 = 0,
  ATTN_ST_F32 = 1,
  ATTN_ST_F16 = 2,
  ATTN_ST_BF16 = 3,
  ATTN_ST_I64 = 4,
  ATTN_ST_I32 = 5,
  ATTN_ST_I16 = 6,
  ATTN_ST_I8 = 7,
  ATTN_ST_U8 = 8,
  ATTN_ST_BOOL = 9,
} attn_st_dtype;

/* Bytes per element (0 for an unknown value) and the format's name ("F32"; NULL if unknown). */
ATTN_API size_t attn_st_dtype_size(attn_st_dtype dtype);
ATTN_API const char *attn_st_dtype_name(attn_st_dtype dtype);

/* One tensor: as read from a file (all fields owned by the file), or as given to attn_st_write
 * (data must hold nbytes bytes; nbytes must equal numel x dtype size). Row-major, contiguous. */
typedef struct attn_st_tensor {
  const char *name;
  attn_st_dtype dtype;
  int ndim;                        /* 0 (a scalar) to ATTN_ST_MAX_DIMS */
  int64_t shape[ATTN_ST_MAX_DIMS]; /* shape[0..ndim) */
  const void *data;
  size_t nbytes;
} attn_st_tensor;

/* Product of shape[0..ndim) (1 for a scalar). */
ATTN_API int64_t attn_st_numel(const attn_st_tensor *t);

typedef struct attn_st_file attn_st_file;

/* Open and validate `path`. On success *file is set (free with attn_st_close). Errors:
 * NULL_POINTER, INVALID_ARGUMENT (cannot open or read the file; malformed: see above), OVERFLOW,
 * OUT_OF_MEMORY. On error *file is NULL. */
ATTN_API attn_status attn_st_open(attn_st_file **file, const char *path);

/* The same over size bytes at data, which the caller keeps alive and unchanged until
 * attn_st_close (nothing is copied). `what` names the buffer in messages (NULL: "buffer"). */
ATTN_API attn_status attn_st_open_memory(attn_st_file **file, const void *data, size_t size,
                                         const char *what);

/* Unmap / free. NULL is a no-op. */
ATTN_API void attn_st_close(attn_st_file *file);

/* A hint that `tensor` (of `file`) will not be read again soon, e.g. once a model has copied or
 * repacked it: for a memory-mapped file, the pages lying wholly inside the tensor's bytes are
 * handed back to the OS (madvise MADV_DONTNEED), so they stop counting in the process's resident
 * memory. Never changes what tensor->data reads: the pages come back from the file if touched
 * again. A no-op for files read into memory, borrowed buffers and NULL arguments. */
ATTN_API void attn_st_release(attn_st_file *file, const attn_st_tensor *tensor);

/* Number of tensors, and tensor i in [0, count) in increasing data offset order. */
ATTN_API int64_t attn_st_count(const attn_st_file *file);
ATTN_API const attn_st_tensor *attn_st_get(const attn_st_file *file, int64_t i);

/* The tensor called `name`, or NULL (O(log n)). */
ATTN_API const attn_st_tensor *attn_st_find(const attn_st_file *file, const char *name);

/* The "__metadata__" string for `key`, or NULL. */
ATTN_API const char *attn_st_metadata(const attn_st_file *file, const char *key);

/* Write n tensors to `path`, with optional metadata: n_meta pairs meta_kv[2i] = key,
 * meta_kv[2i+1] = value (meta_kv may be NULL when n_meta = 0). The header is padded with spaces to
 * a multiple of 8 bytes and the data laid out widest dtype first (in the given order within a
 * dtype size), so every tensor's data starts at a multiple of its element size in the file.
 * The file is written to "<path>.tmp" and renamed over `path` only when complete, so an existing
 * checkpoint is never left half-written. Names must be non-empty, valid UTF-8, unique, and not
 * "__metadata__". Errors: NULL_POINTER, INVALID_ARGUMENT (bad name, dtype, rank, nbytes that do not
 * match the shape, I/O failure with the system's reason), OVERFLOW, OUT_OF_MEMORY. */
ATTN_API attn_status attn_st_write(const char *path, const attn_st_tensor *tensors, int64_t n,
                                   const char *const *meta_kv, int64_t n_meta);

#ifdef __cplusplus
}
#endif

#endif /* ATTN_SAFETENSORS_H */
