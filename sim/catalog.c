/* catalog.c: kubesim's image catalogue: which images exist, under which references, for which
 * platforms, with which layers (shared between images by digest) and executables, and which registry
 * credentials they need. Also the reference grammar (containerd's normalisation of docker.io names).
 * The catalogue is immutable once parsed. */
#include "sim/world_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/err.h"
#include "base/mem.h"

/* ---------------------------------- references ---------------------------------- */

static bool is_lower_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* A path component: [a-z0-9]+ separated by ".", "_", "__" or "-"+. */
static bool path_component_ok(const char *p, size_t n)
{
    if (n == 0 || !is_lower_alnum(p[0]) || !is_lower_alnum(p[n - 1]))
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (is_lower_alnum(c))
            continue;
        if (c != '.' && c != '_' && c != '-')
            return false;
        if (c == '.' && !is_lower_alnum(p[i + 1]))
            return false;
        if (c == '_' && p[i + 1] == '_' && p[i + 2] == '_')
            return false;
    }
    return true;
}

static bool domain_ok(const char *p, size_t n)
{
    if (n == 0)
        return false;
    const char *port = memchr(p, ':', n);
    if (port) {
        if (port + 1 == p + n)
            return false;
        for (const char *q = port + 1; q < p + n; q++)
            if (*q < '0' || *q > '9')
                return false;
    }
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (!(isalnum((unsigned char)c) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']'))
            return false;
    }
    return true;
}

static bool tag_ok(const char *p, size_t n)
{
    if (n == 0 || n > 128)
        return false;
    if (!(isalnum((unsigned char)p[0]) || p[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!(isalnum((unsigned char)p[i]) || p[i] == '_' || p[i] == '.' || p[i] == '-'))
            return false;
    return true;
}

static bool digest_ok(const char *p)
{
    if (strncmp(p, "sha256:", 7) != 0 || strlen(p) != 7 + 64)
        return false;
    for (const char *q = p + 7; *q; q++)
        if (!((*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f')))
            return false;
    return true;
}

int sim_ref_normalize(const char *ref, char *out, size_t out_size)
{
    size_t len = strlen(ref);
    if (len == 0 || len >= SIM_REF_MAX)
        return PW_EINVAL;
    char buf[SIM_REF_MAX];
    memcpy(buf, ref, len + 1);
    const char *digest = NULL;
    char *at = strchr(buf, '@');
    if (at) {
        *at = '\0';
        digest = at + 1;
        if (!digest_ok(digest))
            return PW_EINVAL;
    }
    /* the tag: after the last ':' that follows the last '/' */
    char *slash = strrchr(buf, '/');
    char *colon = strrchr(slash ? slash : buf, ':');
    const char *tag = NULL;
    if (colon) {
        *colon = '\0';
        tag = colon + 1;
        if (!tag_ok(tag, strlen(tag)))
            return PW_EINVAL;
    }
    /* the domain: the first component when it has '.' or ':' or is "localhost" */
    const char *domain = "docker.io";
    char *path = buf;
    char *first = strchr(buf, '/');
    if (first) {
        size_t n = (size_t)(first - buf);
        if (memchr(buf, '.', n) || memchr(buf, ':', n) || (n == 9 && memcmp(buf, "localhost", 9) == 0)) {
            *first = '\0';
            domain = buf;
            path = first + 1;
            if (!domain_ok(domain, n))
                return PW_EINVAL;
        }
    }
    if (strcmp(domain, "index.docker.io") == 0)
        domain = "docker.io";
    /* every path component valid */
    const char *p = path;
    for (;;) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (!path_component_ok(p, n))
            return PW_EINVAL;
        if (!e)
            break;
        p = e + 1;
    }
    bool library = strcmp(domain, "docker.io") == 0 && !strchr(path, '/');
    int w;
    if (digest)
        w = snprintf(out, out_size, "%s/%s%s@%s", domain, library ? "library/" : "", path, digest);
    else
        w = snprintf(out, out_size, "%s/%s%s:%s", domain, library ? "library/" : "", path, tag ? tag : "latest");
    if (w < 0 || (size_t)w >= out_size)
        return PW_ETOOLARGE;
    return 0;
}

void sim_ref_repo(const char *normalized, char *out, size_t out_size)
{
    size_t n = strlen(normalized);
    const char *at = strchr(normalized, '@');
    if (at) {
        n = (size_t)(at - normalized);
    } else {
        const char *slash = strrchr(normalized, '/');
        const char *colon = strrchr(slash ? slash : normalized, ':');
        if (colon)
            n = (size_t)(colon - normalized);
    }
    snprintf(out, out_size, "%.*s", (int)n, normalized);
}

void sim_ref_registry(const char *normalized, char *out, size_t out_size)
{
    const char *slash = strchr(normalized, '/');
    size_t n = slash ? (size_t)(slash - normalized) : strlen(normalized);
    snprintf(out, out_size, "%.*s", (int)n, normalized);
}

bool sim_ref_is_latest(const char *ref)
{
    if (strchr(ref, '@'))
        return false;
    const char *slash = strrchr(ref, '/');
    const char *colon = strrchr(slash ? slash : ref, ':');
    return !colon || strcmp(colon + 1, "latest") == 0;
}

/* ---------------------------------- lookup ---------------------------------- */

const struct sim_image *sim_catalog_find(const sim_catalog *cat, const char *ref)
{
    char norm[SIM_REF_MAX], repo[SIM_REF_MAX];
    if (!cat || sim_ref_normalize(ref, norm, sizeof norm) != 0)
        return NULL;
    const char *at = strchr(norm, '@');
    if (!at) {
        for (int i = 0; i < cat->nimages; i++)
            for (int j = 0; j < cat->images[i].nnames; j++)
                if (strcmp(cat->images[i].names[j], norm) == 0)
                    return &cat->images[i];
        return NULL;
    }
    sim_ref_repo(norm, repo, sizeof repo);
    for (int i = 0; i < cat->nimages; i++) {
        const struct sim_image *img = &cat->images[i];
        bool repo_match = false;
        for (int j = 0; j < img->nnames && !repo_match; j++) {
            char r[SIM_REF_MAX];
            sim_ref_repo(img->names[j], r, sizeof r);
            repo_match = strcmp(r, repo) == 0;
        }
        if (!repo_match)
            continue;
        if (strcmp(img->digest, at + 1) == 0)
            return img;
        for (int p = 0; p < img->nplats; p++)
            if (strcmp(img->plats[p].digest, at + 1) == 0)
                return img;
    }
    return NULL;
}

const struct sim_platform *sim_image_platform(const struct sim_image *img, const char *arch)
{
    for (int p = 0; p < img->nplats; p++)
        if (strcmp(img->plats[p].arch, arch) == 0 && strcmp(img->plats[p].os, "linux") == 0)
            return &img->plats[p];
    return NULL;
}

bool sim_image_has_exe(const struct sim_image *img, const char *path)
{
    for (int i = 0; i < img->nexes; i++)
        if (strcmp(img->exes[i], path) == 0)
            return true;
    return false;
}

/* ---------------------------------- parsing ---------------------------------- */

static void free_strv(char **v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void sim_catalog_free(sim_catalog *cat)
{
    if (!cat)
        return;
    for (int i = 0; i < cat->nimages; i++) {
        struct sim_image *img = &cat->images[i];
        free_strv(img->names, img->nnames);
        free_strv(img->short_names, img->nnames);
        free(img->repo);
        for (int p = 0; p < img->nplats; p++)
            free(img->plats[p].layers);
        free(img->plats);
        free_strv(img->exes, img->nexes);
        free(img->auth_registry);
        free(img->auth_user);
        free(img->auth_pass);
    }
    free(cat->images);
    free(cat->layers);
    free(cat);
}

#define FAIL(...)                                                                                                      \
    do {                                                                                                               \
        snprintf(err, err_size, __VA_ARGS__);                                                                          \
        return PW_EINVAL;                                                                                              \
    } while (0)

/* Interns a layer by digest; the same digest must always have the same size. */
static int intern_layer(sim_catalog *cat, const char *digest, uint64_t size, char *err, size_t err_size)
{
    for (int i = 0; i < cat->nlayers; i++) {
        if (strcmp(cat->layers[i].digest, digest) == 0) {
            if (cat->layers[i].size != size)
                FAIL("layer %s listed with two sizes", digest);
            return i;
        }
    }
    if (cat->nlayers % 64 == 0)
        cat->layers = pw_xrealloc(cat->layers, sizeof *cat->layers * (size_t)(cat->nlayers + 64));
    struct sim_layer *l = &cat->layers[cat->nlayers];
    snprintf(l->digest, sizeof l->digest, "%s", digest);
    l->size = size;
    return cat->nlayers++;
}

static int parse_platform(sim_catalog *cat, struct sim_platform *pl, json_t *jp, const char *name, char *err,
                          size_t err_size)
{
    const char *os = json_string_value(json_object_get(jp, "os"));
    const char *arch = json_string_value(json_object_get(jp, "arch"));
    const char *digest = json_string_value(json_object_get(jp, "digest"));
    json_t *layers = json_object_get(jp, "layers");
    if (!arch || !digest || !digest_ok(digest) || !json_is_array(layers) || json_array_size(layers) == 0)
        FAIL("image %s: a platform needs arch, digest (sha256:<64 hex>) and layers", name);
    snprintf(pl->os, sizeof pl->os, "%s", os ? os : "linux");
    snprintf(pl->arch, sizeof pl->arch, "%s", arch);
    snprintf(pl->digest, sizeof pl->digest, "%s", digest);
    pl->layers = pw_xcalloc(json_array_size(layers), sizeof *pl->layers);
    size_t i;
    json_t *jl;
    json_array_foreach(layers, i, jl)
    {
        const char *ld = json_string_value(json_object_get(jl, "digest"));
        json_t *js = json_object_get(jl, "size");
        if (!ld || !digest_ok(ld) || !json_is_integer(js) || json_integer_value(js) < 0)
            FAIL("image %s: a layer needs digest (sha256:<64 hex>) and size (bytes)", name);
        int li = intern_layer(cat, ld, (uint64_t)json_integer_value(js), err, err_size);
        if (li < 0)
            return li;
        pl->layers[pl->nlayers++] = li;
        pl->size += (uint64_t)json_integer_value(js);
    }
    return 0;
}

static int parse_image(sim_catalog *cat, struct sim_image *img, json_t *ji, char *err, size_t err_size)
{
    json_t *names = json_object_get(ji, "names");
    const char *digest = json_string_value(json_object_get(ji, "digest"));
    json_t *plats = json_object_get(ji, "platforms");
    json_t *exes = json_object_get(ji, "executables");
    if (!json_is_array(names) || json_array_size(names) == 0)
        FAIL("image %d: names must be a non-empty array", img->index);
    const char *first = json_string_value(json_array_get(names, 0));
    if (!first)
        FAIL("image %d: names must be strings", img->index);
    if (!digest || !digest_ok(digest))
        FAIL("image %s: digest must be sha256:<64 hex>", first);
    if (!json_is_array(plats) || json_array_size(plats) == 0)
        FAIL("image %s: platforms must be a non-empty array", first);
    if (exes && !json_is_array(exes))
        FAIL("image %s: executables must be an array", first);
    snprintf(img->digest, sizeof img->digest, "%s", digest);
    img->names = pw_xcalloc(json_array_size(names), sizeof *img->names);
    img->short_names = pw_xcalloc(json_array_size(names), sizeof *img->short_names);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        char norm[SIM_REF_MAX];
        const char *s = json_string_value(v);
        if (!s || sim_ref_normalize(s, norm, sizeof norm) != 0 || strchr(norm, '@'))
            FAIL("image %s: name %s is not a valid tagged reference", first, s ? s : "(not a string)");
        img->names[img->nnames] = pw_xstrdup(norm);
        img->short_names[img->nnames++] = pw_xstrdup(s);
    }
    char repo[SIM_REF_MAX];
    sim_ref_repo(img->names[0], repo, sizeof repo);
    img->repo = pw_xstrdup(repo);
    img->plats = pw_xcalloc(json_array_size(plats), sizeof *img->plats);
    json_array_foreach(plats, i, v)
    {
        int rc = parse_platform(cat, &img->plats[img->nplats], v, first, err, err_size);
        img->nplats++;
        if (rc < 0)
            return rc;
    }
    img->exes = pw_xcalloc(json_array_size(exes) + 1, sizeof *img->exes);
    json_array_foreach(exes, i, v)
    {
        const char *s = json_string_value(v);
        if (!s || s[0] != '/')
            FAIL("image %s: executables must be absolute paths", first);
        img->exes[img->nexes++] = pw_xstrdup(s);
    }
    json_t *auth = json_object_get(ji, "needsAuth");
    if (auth) {
        const char *reg = json_string_value(json_object_get(auth, "registry"));
        const char *user = json_string_value(json_object_get(auth, "username"));
        const char *pass = json_string_value(json_object_get(auth, "password"));
        if (!user || !pass)
            FAIL("image %s: needsAuth needs username and password", first);
        char host[SIM_REF_MAX];
        sim_ref_registry(img->names[0], host, sizeof host);
        img->auth_registry = pw_xstrdup(reg ? reg : host);
        img->auth_user = pw_xstrdup(user);
        img->auth_pass = pw_xstrdup(pass);
    }
    return 0;
}

int sim_catalog_parse(const char *json, sim_catalog **out, char *err, size_t err_size)
{
    json_error_t je;
    json_t *root = json_loads(json, 0, &je);
    if (!root) {
        snprintf(err, err_size, "catalogue is not JSON: line %d: %s", je.line, je.text);
        return PW_EINVAL;
    }
    json_t *images = json_object_get(root, "images");
    if (!json_is_array(images) || json_array_size(images) == 0) {
        json_decref(root);
        snprintf(err, err_size, "catalogue: \"images\" must be a non-empty array");
        return PW_EINVAL;
    }
    sim_catalog *cat = pw_xcalloc(1, sizeof *cat);
    cat->images = pw_xcalloc(json_array_size(images), sizeof *cat->images);
    int rc = 0;
    size_t i;
    json_t *ji;
    json_array_foreach(images, i, ji)
    {
        struct sim_image *img = &cat->images[cat->nimages];
        img->index = cat->nimages++;
        rc = parse_image(cat, img, ji, err, err_size);
        if (rc < 0)
            break;
    }
    /* a reference must name one image only */
    for (int a = 0; rc == 0 && a < cat->nimages; a++)
        for (int b = a + 1; rc == 0 && b < cat->nimages; b++)
            for (int x = 0; rc == 0 && x < cat->images[a].nnames; x++)
                for (int y = 0; rc == 0 && y < cat->images[b].nnames; y++)
                    if (strcmp(cat->images[a].names[x], cat->images[b].names[y]) == 0) {
                        snprintf(err, err_size, "catalogue: %s names two images", cat->images[a].names[x]);
                        rc = PW_EINVAL;
                    }
    json_decref(root);
    if (rc < 0) {
        sim_catalog_free(cat);
        return rc;
    }
    *out = cat;
    return 0;
}

int sim_catalog_load(const char *path, sim_catalog **out, char *err, size_t err_size)
{
    if (!path)
        return sim_catalog_parse(sim_catalog_default_json, out, err, err_size);
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "cannot open catalogue %s", path);
        return PW_EIO;
    }
    size_t cap = 1 << 16, n = 0;
    char *text = pw_xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= (size_t)64 << 20) {
                fclose(f);
                free(text);
                snprintf(err, err_size, "catalogue %s is over 64 MiB", path);
                return PW_ETOOLARGE;
            }
            cap *= 2;
            text = pw_xrealloc(text, cap);
        }
        size_t r = fread(text + n, 1, cap - n - 1, f);
        if (r == 0)
            break;
        n += r;
    }
    fclose(f);
    text[n] = '\0';
    int rc = sim_catalog_parse(text, out, err, err_size);
    free(text);
    return rc;
}
