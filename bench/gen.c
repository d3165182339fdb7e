/* The workload generator (gen.h) and `parley-bench gen`, which writes the stream as JSON
 * Lines for `parley send`. */
#include "gen.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parley/date.h"
#include "parley/error.h"

#define RING 4096         /* recent events a duplicate is drawn from */
#define ZIPF_S 1.1        /* reporter and counterpart activity */
#define TOPIC_ZIPF_S 0.8  /* some topics are far more common than others */

static const char *const kinds[] = {"dialogue",   "visit",      "seminar",   "roundtable",
                                    "letter",     "book_launch", "conference", "exchange"};
static const unsigned kind_weights[] = {30, 14, 18, 12, 6, 4, 10, 6};
static const char *const kind_titles[] = {"dialogue",    "visit",      "seminar",
                                          "roundtable",  "letter",     "book launch",
                                          "conference",  "exchange"};
static const char *const formats[] = {"in_person", "virtual", "hybrid"};
static const unsigned format_weights[] = {60, 25, 15};
static const char *const other_countries[] = {"GB", "DE", "JP", "SG", "KR", "FR", "IN", "AU"};
#define NOTHER (sizeof(other_countries) / sizeof(other_countries[0]))
static const char *const topics[] = {
    "trade", "climate change", "semiconductors", "public health", "maritime security",
    "arms control", "cybersecurity", "artificial intelligence", "digital economy",
    "financial services", "energy", "agriculture", "education", "people-to-people exchange",
    "Taiwan", "Korean Peninsula", "South China Sea", "global governance",
    "development finance", "supply chains", "export controls", "data", "biotechnology",
    "outer space", "Arctic", "counterterrorism", "nonproliferation", "pandemic preparedness",
    "food security", "water", "urbanization", "green finance", "carbon markets",
    "renewable energy", "electric vehicles", "investment", "intellectual property", "currency",
    "sovereign debt", "WTO reform", "G20", "APEC", "crisis management", "strategic stability",
    "ocean governance", "fisheries", "law enforcement", "drug control", "journalism",
    "think tank exchange", "youth", "culture", "tourism", "sports", "history", "philanthropy",
    "bilateral relations", "human rights", "Middle East", "Africa"};
#define NTOPICS (sizeof(topics) / sizeof(topics[0]))
static const char *const cities[] = {
    "Beijing",  "Shanghai",   "Washington", "New York", "Boston",  "San Francisco", "Hong Kong",
    "Singapore", "Geneva",    "London",     "Tokyo",    "Honolulu", "Shenzhen",     "Nanjing",
    "Guangzhou", "Los Angeles", "Chicago",  "Seoul",    "Hangzhou", "Atlanta"};
#define NCITIES (sizeof(cities) / sizeof(cities[0]))
static const char *const ordinals[] = {"First",   "Second", "Third", "Fourth",
                                       "Fifth",   "Sixth",  "Seventh", "Eighth",
                                       "Ninth",   "Tenth",  "Eleventh", "Twelfth"};
#define NORDINALS (sizeof(ordinals) / sizeof(ordinals[0]))

/* Institution name parts: think tanks, universities, funds and NGOs. */
static const char *const tt_heads[] = {"Center", "Institute", "Council", "Forum"};
static const char *const tt_adjs[] = {"Strategic", "Maritime", "Global",   "Energy",
                                      "Regional",  "Economic", "Security", "Pacific"};
static const char *const tt_nouns[] = {"Studies", "Policy", "Affairs", "Dialogue"};
static const char *const uni_places[] = {"Fudan",    "Peking",   "Harvard",  "Tsinghua",
                                         "Columbia", "Nanjing",  "Stanford", "Renmin",
                                         "Georgetown", "Wuhan",  "Zhejiang", "Princeton"};
static const char *const fund_adjs[] = {"Green",   "Pacific",  "Bridge",    "Harmony",
                                        "Horizon", "Atlantic", "Silk Road", "Heritage"};
static const char *const fund_nouns[] = {"Development", "Friendship", "Philanthropy", "Future",
                                         "Innovation"};
static const char *const ngo_heads[] = {"Association", "Society", "Alliance", "Network"};
static const char *const ngo_adjs[] = {"Youth", "Clean", "Rural",   "Public",
                                       "Cultural", "Civic", "Medical", "Ocean"};
static const char *const ngo_nouns[] = {"Exchange", "Health", "Education", "Energy", "Heritage",
                                        "Action"};
#define PICK(arr, h) (arr[(h) % (sizeof(arr) / sizeof(arr[0]))])

struct pb_gen {
  pb_rng_t rng;
  uint64_t seed;
  uint32_t start_day, per_day;
  double late_ratio, dup_ratio;
  uint64_t made; /* original events so far: drives the current day and the ids */
  uint32_t cur_day;
  double inst_cdf[PB_GEN_INSTITUTIONS];
  double topic_cdf[NTOPICS];
  char *names[PB_GEN_INSTITUTIONS];
  uint16_t name_len[PB_GEN_INSTITUTIONS];
  char country[PB_GEN_INSTITUTIONS][3];
  char id_prefix[24];
  size_t id_prefix_len;
  pb_event_t ring[RING];
  uint32_t ring_n, ring_pos;
};

static uint64_t mix(uint64_t x) {
  pb_rng_t r = {x};
  return pb_rng_next(&r);
}

int64_t pb_day_unix(uint32_t day) {
  static uint32_t epoch;
  if (!epoch) epoch = pl_date_from_ymd(1970, 1, 1);
  return ((int64_t)day - (int64_t)epoch) * 86400;
}

static void zipf_cdf(double *cdf, size_t n, double s) {
  double sum = 0;
  for (size_t i = 0; i < n; i++) sum += 1.0 / pow((double)(i + 1), s);
  double acc = 0;
  for (size_t i = 0; i < n; i++) {
    acc += 1.0 / pow((double)(i + 1), s) / sum;
    cdf[i] = acc;
  }
  cdf[n - 1] = 1.0;
}

static uint32_t draw_cdf(pb_rng_t *r, const double *cdf, uint32_t n) {
  double u = pb_rng_unit(r);
  uint32_t lo = 0, hi = n - 1;
  while (lo < hi) {
    uint32_t mid = (lo + hi) / 2;
    if (cdf[mid] > u) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

static unsigned draw_weighted(pb_rng_t *r, const unsigned *w, unsigned n) {
  unsigned total = 0, x;
  for (unsigned i = 0; i < n; i++) total += w[i];
  x = pb_rng_below(r, total);
  for (unsigned i = 0; i < n; i++) {
    if (x < w[i]) return i;
    x -= w[i];
  }
  return n - 1;
}

static int make_name(pb_gen_t *g, uint32_t i) {
  char buf[128];
  uint64_t h = mix(0x5eed0000ull + i); /* independent of the seed: see pb_gen_new */
  unsigned family = (unsigned)(h % 100);
  int n;
  h >>= 8;
  if (family < 40)
    n = snprintf(buf, sizeof(buf), "%s %04u for %s %s", PICK(tt_heads, h), i,
                 PICK(tt_adjs, h >> 8), PICK(tt_nouns, h >> 16));
  else if (family < 65)
    n = snprintf(buf, sizeof(buf), "%s University %04u", PICK(uni_places, h), i);
  else if (family < 80)
    n = snprintf(buf, sizeof(buf), "%s %s Fund %04u", PICK(fund_adjs, h), PICK(fund_nouns, h >> 8),
                 i);
  else
    n = snprintf(buf, sizeof(buf), "%s %04u for %s %s", PICK(ngo_heads, h), i,
                 PICK(ngo_adjs, h >> 8), PICK(ngo_nouns, h >> 16));
  g->names[i] = strdup(buf);
  if (!g->names[i]) return PL_ENOMEM;
  g->name_len[i] = (uint16_t)n;
  /* Home side of the institution: the Track II world is mostly China and the US. */
  h = mix(h ^ 0xc0ffee);
  if (h % 100 < 45) memcpy(g->country[i], "CN", 3);
  else if (h % 100 < 90) memcpy(g->country[i], "US", 3);
  else memcpy(g->country[i], other_countries[(h >> 8) % NOTHER], 3);
  return 0;
}

pb_gen_t *pb_gen_new(const pb_gen_opts_t *o) {
  pb_gen_t *g = calloc(1, sizeof(*g));
  if (!g) return NULL;
  g->seed = o->seed;
  g->rng.s = mix(o->seed ^ 0x70a57ull);
  g->start_day = o->start_day ? o->start_day : pl_date_from_ymd(2015, 1, 1);
  g->per_day = o->per_day ? o->per_day : 5000;
  g->late_ratio = o->late_ratio < 0 ? 0.01 : o->late_ratio;
  g->dup_ratio = o->dup_ratio < 0 ? 0.005 : o->dup_ratio;
  g->cur_day = g->start_day;
  zipf_cdf(g->inst_cdf, PB_GEN_INSTITUTIONS, ZIPF_S);
  zipf_cdf(g->topic_cdf, NTOPICS, TOPIC_ZIPF_S);
  for (uint32_t i = 0; i < PB_GEN_INSTITUTIONS; i++)
    if (make_name(g, i)) {
      pb_gen_free(g);
      return NULL;
    }
  /* Ids carry the seed, so streams of different seeds never collide in one store. */
  g->id_prefix_len = (size_t)snprintf(g->id_prefix, sizeof(g->id_prefix), "s%llu-",
                                      (unsigned long long)o->seed);
  return g;
}

void pb_gen_free(pb_gen_t *g) {
  if (!g) return;
  for (uint32_t i = 0; i < PB_GEN_INSTITUTIONS; i++) free(g->names[i]);
  free(g);
}

uint32_t pb_gen_current_day(const pb_gen_t *g) { return g->cur_day; }
uint32_t pb_gen_start_day(const pb_gen_t *g) { return g->start_day; }

uint32_t pb_gen_pick_inst(pb_gen_t *g) {
  return draw_cdf(&g->rng, g->inst_cdf, PB_GEN_INSTITUTIONS);
}

const char *pb_gen_inst_name(const pb_gen_t *g, uint32_t i, size_t *len) {
  if (len) *len = g->name_len[i];
  return g->names[i];
}

static void fresh_event(pb_gen_t *g, pb_event_t *e) {
  pb_rng_t *r = &g->rng;
  uint64_t in_day;
  uint32_t x;
  memset(e, 0, sizeof(*e));
  e->n = g->made;
  g->cur_day = g->start_day + (uint32_t)(g->made / g->per_day);
  in_day = g->made % g->per_day;
  g->made++;
  e->day = g->cur_day;
  /* Entries of a day spread over its 24 hours, in order, like a live stream. */
  e->time_sec = pb_day_unix(e->day) + (int64_t)(in_day * 86400 / g->per_day);
  e->time_nsec = pb_rng_below(r, 1000000000u);
  if (pb_rng_unit(r) < g->late_ratio) {
    /* Reported late: two weeks to six months after the fact. */
    e->late = 1;
    e->day -= 14 + pb_rng_below(r, 167);
  }
  e->inst = (uint16_t)draw_cdf(r, g->inst_cdf, PB_GEN_INSTITUTIONS);
  x = pb_rng_below(r, 100);
  e->ncp = x < 65 ? 1 : x < 90 ? 2 : 3;
  for (uint8_t i = 0; i < e->ncp; i++) {
    uint16_t c = 0;
    /* Counterparts are mostly across the China-US line; a few tries find one, or not. */
    for (int attempt = 0;; attempt++) {
      int clash;
      c = attempt < 6 ? (uint16_t)draw_cdf(r, g->inst_cdf, PB_GEN_INSTITUTIONS)
                      : (uint16_t)((c + 1) % PB_GEN_INSTITUTIONS);
      clash = c == e->inst;
      for (uint8_t j = 0; j < i; j++)
        if (e->cp[j] == c) clash = 1;
      if (clash) continue;
      if (attempt < 3 && strcmp(g->country[c], g->country[e->inst]) == 0) continue;
      break;
    }
    e->cp[i] = c;
  }
  e->kind = (uint8_t)draw_weighted(r, kind_weights, 8);
  e->format = (uint8_t)draw_weighted(r, format_weights, 3);
  x = pb_rng_below(r, 100);
  e->ntopics = x < 40 ? 1 : x < 72 ? 2 : x < 90 ? 3 : x < 97 ? 4 : 5;
  for (uint8_t i = 0; i < e->ntopics; i++) {
    uint8_t t;
    int clash;
    do {
      t = (uint8_t)draw_cdf(r, g->topic_cdf, NTOPICS);
      clash = 0;
      for (uint8_t j = 0; j < i; j++)
        if (e->topics[j] == t) clash = 1;
    } while (clash);
    e->topics[i] = t;
  }
  if (pb_rng_below(r, 100) < 93) {
    e->has_participants = 1;
    e->participants = pb_rng_below(r, 100) < 85 ? 6 + pb_rng_below(r, 30)
                                                : 30 + pb_rng_below(r, 300);
  }
  if (pb_rng_below(r, 100) < 40) {
    e->has_title = 1;
    e->title_ordinal = (uint8_t)pb_rng_below(r, NORDINALS);
  }
  if (pb_rng_below(r, 100) < 60) {
    e->has_location = 1;
    e->location = (uint8_t)pb_rng_below(r, NCITIES);
  }
}

void pb_gen_next(pb_gen_t *g, pb_event_t *e) {
  if (g->ring_n > 0 && pb_rng_unit(&g->rng) < g->dup_ratio) {
    /* A client retry: the very same record (date and id) again. */
    *e = g->ring[pb_rng_below(&g->rng, g->ring_n)];
    e->dup = 1;
    return;
  }
  fresh_event(g, e);
  g->ring[g->ring_pos] = *e;
  g->ring_pos = (g->ring_pos + 1) % RING;
  if (g->ring_n < RING) g->ring_n++;
}

static size_t format_id(const pb_gen_t *g, const pb_event_t *e, char *out) {
  memcpy(out, g->id_prefix, g->id_prefix_len);
  return g->id_prefix_len +
         (size_t)sprintf(out + g->id_prefix_len, "%llu", (unsigned long long)e->n);
}

static size_t format_title(const pb_event_t *e, char *out, size_t cap) {
  int n = snprintf(out, cap, "%s %s on %s", ordinals[e->title_ordinal], kind_titles[e->kind],
                   topics[e->topics[0]]);
  return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n) {
  msgpack_pack_str(pk, n);
  msgpack_pack_str_body(pk, s, n);
}

#define PACK_LIT(pk, lit) pack_str((pk), (lit), sizeof(lit) - 1)

int pb_gen_pack(const pb_gen_t *g, const pb_event_t *e, msgpack_packer *pk) {
  char id[48], date[11], title[128];
  const char *country = g->country[e->inst];
  size_t n = 8 + e->has_location + e->has_participants + e->has_title;
  pl_date_format(e->day, date);
  if (msgpack_pack_map(pk, n)) return PL_ENOMEM;
  PACK_LIT(pk, "id");
  pack_str(pk, id, format_id(g, e, id));
  PACK_LIT(pk, "date");
  pack_str(pk, date, 10);
  PACK_LIT(pk, "institution");
  pack_str(pk, g->names[e->inst], g->name_len[e->inst]);
  PACK_LIT(pk, "counterparts");
  msgpack_pack_array(pk, e->ncp);
  for (uint8_t i = 0; i < e->ncp; i++) pack_str(pk, g->names[e->cp[i]], g->name_len[e->cp[i]]);
  PACK_LIT(pk, "kind");
  pack_str(pk, kinds[e->kind], strlen(kinds[e->kind]));
  PACK_LIT(pk, "format");
  pack_str(pk, formats[e->format], strlen(formats[e->format]));
  if (e->has_location) {
    PACK_LIT(pk, "location");
    pack_str(pk, cities[e->location], strlen(cities[e->location]));
  }
  PACK_LIT(pk, "country");
  pack_str(pk, country, 2);
  if (e->has_participants) {
    PACK_LIT(pk, "participants");
    msgpack_pack_uint32(pk, e->participants);
  }
  PACK_LIT(pk, "topics");
  msgpack_pack_array(pk, e->ntopics);
  for (uint8_t i = 0; i < e->ntopics; i++)
    pack_str(pk, topics[e->topics[i]], strlen(topics[e->topics[i]]));
  if (e->has_title) {
    PACK_LIT(pk, "title");
    pack_str(pk, title, format_title(e, title, sizeof(title)));
  }
  return 0;
}

/* Names and vocabularies are plain ASCII without quotes or backslashes, but the escaper
 * stays general so the JSON is valid whatever the tables hold. */
static int json_str(pb_buf_t *o, const char *s, size_t n) {
  if (pb_buf_reserve(o, n * 6 + 2)) return PL_ENOMEM;
  o->p[o->n++] = '"';
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      o->p[o->n++] = '\\';
      o->p[o->n++] = (char)c;
    } else if (c < 0x20) {
      o->n += (size_t)sprintf(o->p + o->n, "\\u%04x", c);
    } else {
      o->p[o->n++] = (char)c;
    }
  }
  o->p[o->n++] = '"';
  return 0;
}

static int json_lit(pb_buf_t *o, const char *s) { return pb_buf_append(o, s, strlen(s)); }

int pb_gen_json(const pb_gen_t *g, const pb_event_t *e, pb_buf_t *o) {
  char id[48], date[11], title[128], num[16];
  int rc = 0;
  pl_date_format(e->day, date);
  rc |= json_lit(o, "{\"id\":");
  rc |= json_str(o, id, format_id(g, e, id));
  rc |= json_lit(o, ",\"date\":");
  rc |= json_str(o, date, 10);
  rc |= json_lit(o, ",\"institution\":");
  rc |= json_str(o, g->names[e->inst], g->name_len[e->inst]);
  rc |= json_lit(o, ",\"counterparts\":[");
  for (uint8_t i = 0; i < e->ncp; i++) {
    if (i) rc |= json_lit(o, ",");
    rc |= json_str(o, g->names[e->cp[i]], g->name_len[e->cp[i]]);
  }
  rc |= json_lit(o, "],\"kind\":");
  rc |= json_str(o, kinds[e->kind], strlen(kinds[e->kind]));
  rc |= json_lit(o, ",\"format\":");
  rc |= json_str(o, formats[e->format], strlen(formats[e->format]));
  if (e->has_location) {
    rc |= json_lit(o, ",\"location\":");
    rc |= json_str(o, cities[e->location], strlen(cities[e->location]));
  }
  rc |= json_lit(o, ",\"country\":");
  rc |= json_str(o, g->country[e->inst], 2);
  if (e->has_participants) {
    snprintf(num, sizeof(num), "%u", e->participants);
    rc |= json_lit(o, ",\"participants\":");
    rc |= json_lit(o, num);
  }
  rc |= json_lit(o, ",\"topics\":[");
  for (uint8_t i = 0; i < e->ntopics; i++) {
    if (i) rc |= json_lit(o, ",");
    rc |= json_str(o, topics[e->topics[i]], strlen(topics[e->topics[i]]));
  }
  rc |= json_lit(o, "]");
  if (e->has_title) {
    rc |= json_lit(o, ",\"title\":");
    rc |= json_str(o, title, format_title(e, title, sizeof(title)));
  }
  rc |= json_lit(o, "}\n");
  return rc ? PL_ENOMEM : 0;
}

/* ---- parley-bench gen ---- */

static const char gen_usage[] =
    "usage: parley-bench gen [--events N] [--seed S] [--per-day N] [--stats]\n"
    "Writes N generated engagement records (default 10000) as JSON Lines to stdout, for\n"
    "`parley send`. The same seed always gives the same stream. --stats prints the size of\n"
    "the records as MessagePack and the shape of the stream to stderr.\n";

int pb_cmd_gen(int argc, char **argv) {
  uint64_t events = 10000, seed = 1, per_day = 0;
  int stats = 0;
  pb_opt_t opts[] = {{"--events", PB_OPT_U64, &events},
                     {"--seed", PB_OPT_U64, &seed},
                     {"--per-day", PB_OPT_U64, &per_day},
                     {"--stats", PB_OPT_FLAG, &stats}};
  pb_gen_opts_t go = {seed, 0, 0, -1, -1};
  pb_gen_t *g;
  pb_buf_t line = {0}, mp = {0};
  msgpack_packer pk;
  uint64_t late = 0, dups = 0, mp_bytes = 0, top10 = 0;
  pb_parse_opts("gen", argc, argv, opts, sizeof(opts) / sizeof(opts[0]), gen_usage);
  go.seed = seed;
  go.per_day = (uint32_t)per_day;
  g = pb_gen_new(&go);
  if (!g) pb_die("gen: out of memory");
  msgpack_packer_init(&pk, &mp, pb_buf_write);
  for (uint64_t i = 0; i < events; i++) {
    pb_event_t e;
    pb_gen_next(g, &e);
    line.n = 0;
    if (pb_gen_json(g, &e, &line)) pb_die("gen: out of memory");
    if (fwrite(line.p, 1, line.n, stdout) != line.n) pb_die("gen: write failed");
    if (stats) {
      mp.n = 0;
      pb_gen_pack(g, &e, &pk);
      mp_bytes += mp.n;
      late += e.late;
      dups += e.dup;
      top10 += e.inst < 10;
    }
  }
  if (fflush(stdout) != 0) pb_die("gen: write failed");
  if (stats && events) {
    char a[11], b[11];
    pl_date_format(pb_gen_start_day(g), a);
    pl_date_format(pb_gen_current_day(g), b);
    fprintf(stderr,
            "gen: %llu records, %.1f bytes each as MessagePack, %.2f%% late, %.2f%% duplicates, "
            "%.1f%% from the 10 most active institutions, dates %s..%s\n",
            (unsigned long long)events, (double)mp_bytes / (double)events,
            100.0 * (double)late / (double)events, 100.0 * (double)dups / (double)events,
            100.0 * (double)top10 / (double)events, a, b);
  }
  pb_buf_free(&line);
  pb_buf_free(&mp);
  pb_gen_free(g);
  return 0;
}
