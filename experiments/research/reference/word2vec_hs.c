/* word2vec.c's skip-gram hierarchical softmax, transcribed, with one change switchable: the
 * updates of B windows computed on the parameters before them and applied together (a batched
 * step, as sgns_jax's), the windows either consecutive or strided through a chunk of 8,192.
 *
 *   word2vec_hs DIR EPOCHS SEED B LAYOUT OUT
 *     DIR     ids.bin (int32 [n], in-vocabulary tokens), keep.bin (float64 [V], subsampling
 *             keep-probabilities), points.bin / codes.bin (int32 / int8 [V, L]: the Huffman
 *             paths), lengths.bin (int32 [V]), meta.txt ("n V L dim window"), as written by
 *             experiments/research/ablate_hs_gap.py
 *     B       0: word2vec's order, one pair at a time (node rows after every node, the input row
 *             after its pair); B > 0: B windows a step
 *     LAYOUT  consecutive | strided (step t of a chunk takes windows t, t + T, t + 2T, ...)
 *     OUT     float32 [V, dim]: the input vectors
 *
 * As word2vec.c: sentences of 1,000 kept words, subsampling per token, a reduced window
 * b ~ U{0..window-1} per centre, the context's input row and the centre's path (word2vec's
 * skip-gram orientation), a node skipped when |f| >= 6, lr linear in words read down to
 * lr * 1e-4, input rows uniform in +-1/dim (gensim 4's range), node rows zero. The sigmoid is
 * exact (word2vec.c tabulates it) and the random numbers are xorshift64, not word2vec's LCG.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SENTENCE 1000
#define CHUNK 8192
#define MAX_EXP 6.0f

static uint64_t state;
static uint64_t next_random(void) { state ^= state << 13; state ^= state >> 7; state ^= state << 17; return state; }
static double uniform(void) { return (next_random() >> 11) * (1.0 / 9007199254740992.0); }

static long n; static int V, L, D, W, B, strided;
static int *ids, *points, *lengths; static signed char *codes; static double *keep;
static float *w_in, *w_out, *d_in, *d_out;   /* tables and (batched) pending deltas */
static int *dirty_in, *dirty_out, n_dirty_in, n_dirty_out; static char *mark_in, *mark_out;

/* The chunk's windows: centre, contexts, learning rate. */
static int chunk_centre[CHUNK], chunk_n[CHUNK], *chunk_ctx; static double chunk_lr[CHUNK]; static int chunk_size;

static void *load(const char *dir, const char *name, size_t bytes) {
  char path[4096]; snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "rb"); if (!f) { perror(path); exit(2); }
  void *p = malloc(bytes); if (fread(p, 1, bytes, f) != bytes) { fprintf(stderr, "short read: %s\n", path); exit(2); }
  fclose(f); return p;
}

/* One pair: the context's input row against the centre's path. In word2vec's order (B = 0) the
 * node rows and then the input row change at once; batched, the deltas wait for the step's end. */
static void train_pair(int centre, int context, float alpha, float *neu1e) {
  float *l1 = w_in + (long)context * D;
  memset(neu1e, 0, D * sizeof(float));
  for (int d = 0; d < lengths[centre]; d++) {
    int node = points[(long)centre * L + d];
    float *l2 = w_out + (long)node * D, f = 0;
    for (int k = 0; k < D; k++) f += l1[k] * l2[k];
    if (f <= -MAX_EXP || f >= MAX_EXP) continue;
    float g = (1.0f - codes[(long)centre * L + d] - 1.0f / (1.0f + expf(-f))) * alpha;
    for (int k = 0; k < D; k++) neu1e[k] += g * l2[k];
    float *target = B ? d_out + (long)node * D : l2;
    for (int k = 0; k < D; k++) target[k] += g * l1[k];
    if (B && !mark_out[node]) { mark_out[node] = 1; dirty_out[n_dirty_out++] = node; }
  }
  float *target = B ? d_in + (long)context * D : l1;
  for (int k = 0; k < D; k++) target[k] += neu1e[k];
  if (B && !mark_in[context]) { mark_in[context] = 1; dirty_in[n_dirty_in++] = context; }
}

static void apply_deltas(void) {
  for (int i = 0; i < n_dirty_in; i++) {
    long r = (long)dirty_in[i] * D; mark_in[dirty_in[i]] = 0;
    for (int k = 0; k < D; k++) { w_in[r + k] += d_in[r + k]; d_in[r + k] = 0; }
  }
  for (int i = 0; i < n_dirty_out; i++) {
    long r = (long)dirty_out[i] * D; mark_out[dirty_out[i]] = 0;
    for (int k = 0; k < D; k++) { w_out[r + k] += d_out[r + k]; d_out[r + k] = 0; }
  }
  n_dirty_in = n_dirty_out = 0;
}

static void train_window(int i, float *neu1e) {
  for (int j = 0; j < chunk_n[i]; j++) train_pair(chunk_centre[i], chunk_ctx[(long)i * 2 * W + j], (float)chunk_lr[i], neu1e);
}

static void train_chunk(float *neu1e) {
  if (B == 0) { for (int i = 0; i < chunk_size; i++) train_window(i, neu1e); }
  else if (!strided) {
    for (int s = 0; s < chunk_size; s += B) { for (int i = s; i < s + B && i < chunk_size; i++) train_window(i, neu1e); apply_deltas(); }
  } else {
    int steps = (CHUNK + B - 1) / B;  /* as sgns_jax: the stride is the chunk's steps */
    for (int t = 0; t < steps; t++) { for (int i = t; i < chunk_size; i += steps) train_window(i, neu1e); apply_deltas(); }
  }
  chunk_size = 0;
}

int main(int argc, char **argv) {
  if (argc != 7) { fprintf(stderr, "usage: %s DIR EPOCHS SEED B consecutive|strided OUT\n", argv[0]); return 2; }
  const char *dir = argv[1]; int epochs = atoi(argv[2]); state = 0x9E3779B97F4A7C15ULL * (uint64_t)(atoi(argv[3]) + 1);
  B = atoi(argv[4]); strided = strcmp(argv[5], "strided") == 0;
  char path[4096]; snprintf(path, sizeof path, "%s/meta.txt", dir);
  FILE *f = fopen(path, "r"); if (!f || fscanf(f, "%ld %d %d %d %d", &n, &V, &L, &D, &W) != 5) { fprintf(stderr, "bad %s\n", path); return 2; }
  fclose(f);
  ids = load(dir, "ids.bin", n * 4); keep = load(dir, "keep.bin", (size_t)V * 8);
  points = load(dir, "points.bin", (size_t)V * L * 4); codes = load(dir, "codes.bin", (size_t)V * L);
  lengths = load(dir, "lengths.bin", (size_t)V * 4);
  w_in = malloc((size_t)V * D * 4); w_out = calloc((size_t)V * D, 4);
  d_in = calloc((size_t)V * D, 4); d_out = calloc((size_t)V * D, 4);
  dirty_in = malloc((size_t)V * 4); dirty_out = malloc((size_t)V * 4); mark_in = calloc(V, 1); mark_out = calloc(V, 1);
  chunk_ctx = malloc((size_t)CHUNK * 2 * W * 4);
  float *neu1e = malloc(D * sizeof(float));
  for (long i = 0; i < (long)V * D; i++) w_in[i] = (float)((uniform() * 2 - 1) / D);
  const double alpha0 = 0.025, total = (double)epochs * n;
  long words_done = 0; int sentence[MAX_SENTENCE];
  for (int e = 0; e < epochs; e++) {
    long p = 0;
    while (p < n) {
      long start = p; int len = 0;
      while (p < n && len < MAX_SENTENCE) { int w = ids[p++]; if (uniform() < keep[w]) sentence[len++] = w; }
      for (int i = 0; i < len; i++) {
        double alpha = alpha0 * (1 - (words_done + (double)(p - start) * i / len) / total);
        if (alpha < alpha0 * 1e-4) alpha = alpha0 * 1e-4;
        int b = (int)(next_random() % W), m = 0;
        for (int a = b; a < 2 * W + 1 - b; a++) {
          int c = i - W + a;
          if (a != W && c >= 0 && c < len) chunk_ctx[(long)chunk_size * 2 * W + m++] = sentence[c];
        }
        if (!m) continue;
        chunk_centre[chunk_size] = sentence[i]; chunk_n[chunk_size] = m; chunk_lr[chunk_size] = alpha;
        if (++chunk_size == CHUNK) train_chunk(neu1e);
      }
      words_done += p - start;
    }
  }
  if (chunk_size) train_chunk(neu1e);
  f = fopen(argv[6], "wb"); if (!f || fwrite(w_in, 4, (size_t)V * D, f) != (size_t)V * D) { perror(argv[6]); return 2; }
  fclose(f); return 0;
}
