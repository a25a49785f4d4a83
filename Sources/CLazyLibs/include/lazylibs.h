// libcurl and libxml2, opened with dlopen when first used (issue #7): linked the usual
// way (FoundationNetworking, FoundationXML), they and ~30 libraries behind them (TLS,
// Kerberos, LDAP, ICU...) were mapped and initialised in every run, ~7 MB of resident
// memory that only a BigQuery sink or an XML callback body needs. Only what sluice uses
// of each is here; the constants are libcurl's and libxml2's stable ABI values.
#ifndef SLUICE_LAZYLIBS_H
#define SLUICE_LAZYLIBS_H

#include <stddef.h>

// ---- HTTP (libcurl) ----

typedef struct sluice_http_response {
    long status;             // the HTTP status (0 when no response came)
    unsigned char *body;     // the response body (malloc'd; free with sluice_http_response_free)
    size_t body_count;
    size_t body_capacity;
    int code;                // libcurl's CURLcode: 0 when a response came; -1: libcurl could not be loaded
    char message[256];       // why, when code != 0 (never the URL nor a header)
} sluice_http_response;

// One request on a connection of its own. `headers`: "Name: value" lines separated by
// "\n" (NULL for none). `body` may be NULL. `timeout_ms` bounds the whole request.
// Returns `out->code`.
int sluice_http_perform(const char *method, const char *url, const char *headers, const unsigned char *body,
                        size_t body_count, long timeout_ms, sluice_http_response *out);
void sluice_http_response_free(sluice_http_response *response);

// ---- XML (libxml2's xmlTextReader) ----

// 0 when libxml2 could be loaded; otherwise -1 and why in `problem`.
int sluice_xml_load(char *problem, size_t size);
// A reader over `count` bytes (NULL if it cannot be made): no network, no DTD loaded, no
// entity substituted (external entities are never read), errors not printed.
void *sluice_xml_open(const unsigned char *bytes, int count);
// 1: a node was read; 0: the end; -1: malformed.
int sluice_xml_read(void *reader);
// The node's type (1 element, 3 text, 4 CDATA, 13/14 whitespace, 15 end of element, ...).
int sluice_xml_node_type(void *reader);
// The node's qualified name and value (UTF-8; valid until the next read; may be NULL).
const char *sluice_xml_name(void *reader);
const char *sluice_xml_value(void *reader);
// 1 for an element written <empty/> (no end-of-element node follows).
int sluice_xml_is_empty_element(void *reader);
// Moves to the element's next attribute (namespace declarations included): 1, or 0 when none is left.
int sluice_xml_next_attribute(void *reader);
int sluice_xml_line(void *reader);
int sluice_xml_column(void *reader);
void sluice_xml_close(void *reader);

#endif
