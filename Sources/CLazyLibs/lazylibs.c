// See include/lazylibs.h.
#include "lazylibs.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The first of `names` that dlopen can open; NULL and dlerror's text in `problem` if none.
static void *open_first(const char *const *names, char *problem, size_t size) {
    const char *why = "not found";
    for (const char *const *n = names; *n; n++) {
        void *h = dlopen(*n, RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
        const char *e = dlerror();
        if (e) why = e;
    }
    snprintf(problem, size, "cannot load %s: %s", names[0], why);
    return NULL;
}

// A function of a library and where its address goes.
struct symbol {
    const char *name;
    void **slot;
};

// Opens the first of `names` and finds each of `symbols` (a list ending with a NULL name)
// in it: 1, or 0 and why in `problem`.
static int open_library(const char *const *names, const struct symbol *symbols, char *problem, size_t size) {
    void *h = open_first(names, problem, size);
    if (!h) return 0;
    for (const struct symbol *s = symbols; s->name; s++) {
        *s->slot = dlsym(h, s->name);
        if (!*s->slot) {
            snprintf(problem, size, "%s has no symbol %s", names[0], s->name);
            return 0;
        }
    }
    return 1;
}

// ---- libcurl ----

typedef void CURL;
struct curl_slist;

// CURLoption values (curl.h: LONG + n, OBJECTPOINT 10000 + n, FUNCTIONPOINT 20000 + n,
// OFF_T 30000 + n) and CURLINFO_RESPONSE_CODE (CURLINFO_LONG 0x200000 + 2).
enum {
    OPT_WRITEDATA = 10001,
    OPT_URL = 10002,
    OPT_POSTFIELDS = 10015,
    OPT_HTTPHEADER = 10023,
    OPT_CUSTOMREQUEST = 10036,
    OPT_ACCEPT_ENCODING = 10102,
    OPT_WRITEFUNCTION = 20011,
    OPT_POSTFIELDSIZE_LARGE = 30120,
    OPT_NOBODY = 44,
    OPT_POST = 47,
    OPT_FRESH_CONNECT = 74,
    OPT_FORBID_REUSE = 75,
    OPT_HTTPGET = 80,
    OPT_NOSIGNAL = 99,
    OPT_TIMEOUT_MS = 155,
    OPT_CONNECTTIMEOUT_MS = 156,
    INFO_RESPONSE_CODE = 0x200002,
    GLOBAL_ALL = 3,
};

static struct {
    int (*global_init)(long flags);
    CURL *(*easy_init)(void);
    int (*easy_setopt)(CURL *handle, int option, ...);
    int (*easy_perform)(CURL *handle);
    int (*easy_getinfo)(CURL *handle, int info, ...);
    void (*easy_cleanup)(CURL *handle);
    struct curl_slist *(*slist_append)(struct curl_slist *list, const char *line);
    void (*slist_free_all)(struct curl_slist *list);
    const char *(*easy_strerror)(int code);
} curl;
static int curl_ready;
static char curl_problem[200];
static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void load_curl(void) {
    static const char *const names[] = {"libcurl.so.4", "libcurl.so", "libcurl.4.dylib", "libcurl.dylib", NULL};
    const struct symbol symbols[] = {
        {"curl_global_init", (void **)&curl.global_init},
        {"curl_easy_init", (void **)&curl.easy_init},
        {"curl_easy_setopt", (void **)&curl.easy_setopt},
        {"curl_easy_perform", (void **)&curl.easy_perform},
        {"curl_easy_getinfo", (void **)&curl.easy_getinfo},
        {"curl_easy_cleanup", (void **)&curl.easy_cleanup},
        {"curl_slist_append", (void **)&curl.slist_append},
        {"curl_slist_free_all", (void **)&curl.slist_free_all},
        {"curl_easy_strerror", (void **)&curl.easy_strerror},
        {NULL, NULL},
    };
    if (!open_library(names, symbols, curl_problem, sizeof(curl_problem))) return;
    // Once per process, before any other thread uses libcurl (pthread_once).
    if (curl.global_init(GLOBAL_ALL) != 0) {
        snprintf(curl_problem, sizeof(curl_problem), "curl_global_init failed");
        return;
    }
    curl_ready = 1;
}

static size_t append_body(char *data, size_t size, size_t count, void *context) {
    sluice_http_response *out = context;
    size_t n = size * count;
    if (out->body_count + n > out->body_capacity) {
        size_t capacity = out->body_capacity ? out->body_capacity : 4096;
        while (capacity < out->body_count + n) capacity *= 2;
        unsigned char *grown = realloc(out->body, capacity);
        if (!grown) return 0;  // libcurl then fails the transfer (CURLE_WRITE_ERROR)
        out->body = grown;
        out->body_capacity = capacity;
    }
    memcpy(out->body + out->body_count, data, n);
    out->body_count += n;
    return n;
}

int sluice_http_perform(const char *method, const char *url, const char *headers, const unsigned char *body,
                        size_t body_count, long timeout_ms, sluice_http_response *out) {
    memset(out, 0, sizeof(*out));
    pthread_once(&curl_once, load_curl);
    if (!curl_ready) {
        out->code = -1;
        snprintf(out->message, sizeof(out->message), "%s", curl_problem);
        return out->code;
    }
    CURL *h = curl.easy_init();
    if (!h) {
        out->code = -1;
        snprintf(out->message, sizeof(out->message), "curl_easy_init failed");
        return out->code;
    }
    struct curl_slist *list = NULL;
    if (headers) {
        // One header a line; the caller has refused values with line breaks.
        const char *start = headers;
        while (*start) {
            const char *end = strchr(start, '\n');
            size_t n = end ? (size_t)(end - start) : strlen(start);
            char *line = malloc(n + 1);
            if (!line) break;
            memcpy(line, start, n);
            line[n] = 0;
            list = curl.slist_append(list, line);
            free(line);
            start += n + (end ? 1 : 0);
        }
    }
    if (body) {
        // No "Expect: 100-continue" round trip before large bodies.
        list = curl.slist_append(list, "Expect:");
    }
    curl.easy_setopt(h, OPT_URL, url);
    curl.easy_setopt(h, OPT_NOSIGNAL, 1L);
    curl.easy_setopt(h, OPT_FRESH_CONNECT, 1L);
    curl.easy_setopt(h, OPT_FORBID_REUSE, 1L);
    curl.easy_setopt(h, OPT_TIMEOUT_MS, timeout_ms);
    curl.easy_setopt(h, OPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl.easy_setopt(h, OPT_ACCEPT_ENCODING, "");
    curl.easy_setopt(h, OPT_WRITEFUNCTION, append_body);
    curl.easy_setopt(h, OPT_WRITEDATA, (void *)out);
    if (strcmp(method, "GET") == 0) {
        curl.easy_setopt(h, OPT_HTTPGET, 1L);
    } else if (strcmp(method, "HEAD") == 0) {
        curl.easy_setopt(h, OPT_NOBODY, 1L);
    } else {
        if (strcmp(method, "POST") == 0) {
            curl.easy_setopt(h, OPT_POST, 1L);
        } else {
            curl.easy_setopt(h, OPT_CUSTOMREQUEST, method);
        }
        if (body || strcmp(method, "POST") == 0) {
            curl.easy_setopt(h, OPT_POSTFIELDSIZE_LARGE, (long long)body_count);
            curl.easy_setopt(h, OPT_POSTFIELDS, body ? (const char *)body : "");
        }
    }
    if (list) curl.easy_setopt(h, OPT_HTTPHEADER, list);
    int code = curl.easy_perform(h);
    if (code == 0) {
        long status = 0;
        curl.easy_getinfo(h, INFO_RESPONSE_CODE, &status);
        out->status = status;
    } else {
        // libcurl's text for the code only: its error buffer can name the host or the URL.
        snprintf(out->message, sizeof(out->message), "%s", curl.easy_strerror(code));
    }
    out->code = code;
    curl.easy_cleanup(h);
    if (list) curl.slist_free_all(list);
    return code;
}

void sluice_http_response_free(sluice_http_response *response) {
    free(response->body);
    response->body = NULL;
    response->body_count = response->body_capacity = 0;
}

// ---- libxml2 ----

// xmlParserOption: no network access (no DTD loading nor entity substitution either:
// those are options not given).
enum { XML_PARSE_NONET = 1 << 11 };

typedef void (*xml_reader_error)(void *arg, const char *message, int severity, void *locator);
typedef void (*xml_generic_error)(void *context, const char *message, ...);

static struct {
    void (*init_parser)(void);
    void *(*reader_for_memory)(const char *buffer, int size, const char *url, const char *encoding, int options);
    int (*read)(void *reader);
    int (*node_type)(void *reader);
    const unsigned char *(*const_name)(void *reader);
    const unsigned char *(*const_value)(void *reader);
    int (*is_empty_element)(void *reader);
    int (*move_to_next_attribute)(void *reader);
    int (*line_number)(void *reader);
    int (*column_number)(void *reader);
    void (*set_error_handler)(void *reader, xml_reader_error handler, void *arg);
    void (*set_generic_error_func)(void *context, xml_generic_error handler);
    void (*free_reader)(void *reader);
} xml;
static int xml_ready;
static char xml_problem[200];
static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void load_xml(void) {
    static const char *const names[] = {"libxml2.so.2", "libxml2.so", "libxml2.2.dylib", "libxml2.dylib", NULL};
    const struct symbol symbols[] = {
        {"xmlInitParser", (void **)&xml.init_parser},
        {"xmlReaderForMemory", (void **)&xml.reader_for_memory},
        {"xmlTextReaderRead", (void **)&xml.read},
        {"xmlTextReaderNodeType", (void **)&xml.node_type},
        {"xmlTextReaderConstName", (void **)&xml.const_name},
        {"xmlTextReaderConstValue", (void **)&xml.const_value},
        {"xmlTextReaderIsEmptyElement", (void **)&xml.is_empty_element},
        {"xmlTextReaderMoveToNextAttribute", (void **)&xml.move_to_next_attribute},
        {"xmlTextReaderGetParserLineNumber", (void **)&xml.line_number},
        {"xmlTextReaderGetParserColumnNumber", (void **)&xml.column_number},
        {"xmlTextReaderSetErrorHandler", (void **)&xml.set_error_handler},
        {"xmlSetGenericErrorFunc", (void **)&xml.set_generic_error_func},
        {"xmlFreeTextReader", (void **)&xml.free_reader},
        {NULL, NULL},
    };
    if (!open_library(names, symbols, xml_problem, sizeof(xml_problem))) return;
    xml.init_parser();
    xml_ready = 1;
}

int sluice_xml_load(char *problem, size_t size) {
    pthread_once(&xml_once, load_xml);
    if (xml_ready) return 0;
    snprintf(problem, size, "%s", xml_problem);
    return -1;
}

// Errors are told by the read's result and the parser's position, never printed.
static void quiet_reader_error(void *arg, const char *message, int severity, void *locator) {
    (void)arg; (void)message; (void)severity; (void)locator;
}
static void quiet_generic_error(void *context, const char *message, ...) {
    (void)context; (void)message;
}

void *sluice_xml_open(const unsigned char *bytes, int count) {
    if (!xml_ready) return NULL;
    // libxml2 keeps the generic error handler per thread.
    xml.set_generic_error_func(NULL, quiet_generic_error);
    void *r = xml.reader_for_memory((const char *)bytes, count, NULL, NULL, XML_PARSE_NONET);
    if (r) xml.set_error_handler(r, quiet_reader_error, NULL);
    return r;
}

int sluice_xml_read(void *reader) { return xml.read(reader); }
int sluice_xml_node_type(void *reader) { return xml.node_type(reader); }
const char *sluice_xml_name(void *reader) { return (const char *)xml.const_name(reader); }
const char *sluice_xml_value(void *reader) { return (const char *)xml.const_value(reader); }
int sluice_xml_is_empty_element(void *reader) { return xml.is_empty_element(reader); }
int sluice_xml_next_attribute(void *reader) { return xml.move_to_next_attribute(reader); }
int sluice_xml_line(void *reader) { return xml.line_number(reader); }
int sluice_xml_column(void *reader) { return xml.column_number(reader); }
void sluice_xml_close(void *reader) { xml.free_reader(reader); }
