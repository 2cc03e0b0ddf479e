/*
 * A customer onboarding in C, each step a durable checkpoint.
 *
 *   onboarding STORE_DIR [EXECUTION_ID]
 *   onboarding unix:///path/to/omium.sock [EXECUTION_ID]    (or http://127.0.0.1:7700)
 *
 * Every step is checked with omium_run_recorded first: when a previous run (one that was
 * killed, say) recorded it, its result is taken from the store and the step is not run
 * again; otherwise the step runs (a sleep stands for the LLM call) and omium_run_record
 * stores its result, durably, before the next step starts. So kill this program at any point
 * and start it again with the same execution id: it replays what is done and finishes the
 * rest.
 *
 * Given a URL instead of a directory, it records into the store an `omium serve` daemon owns
 * (omium_store_connect), so several processes share one store; everything else is the same.
 *
 * Environment: ONBOARDING_STEP_MS (default 300) is the time a step takes;
 * ONBOARDING_DURABILITY is "sync" (default), "buffered" or "none" (a daemon has its own);
 * OMIUM_API_KEY is the daemon's API key, when it needs one.
 *
 * Build: make -C examples/c (see the Makefile and docs/c.md).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "omium.h"

static const struct {
    const char *name;
    const char *agent;
} STEPS[] = {
    {"kyc_doc_validated", "kyc_agent"},
    {"credit_score", "credit_agent"},
    {"offer", "offer_agent"},
    {"notify_customer", "offer_agent"},
};
#define STEP_COUNT (sizeof STEPS / sizeof STEPS[0])

/* Stops the program with Omium's message when a call fails. */
static void check(omium_status status, const char *what) {
    if (status != OMIUM_OK) {
        fprintf(stderr, "onboarding: %s failed: [%s] %s\n", what, omium_status_name(status),
                omium_last_error());
        exit(1);
    }
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0) {
    }
}

int main(int argc, char **argv) {
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s STORE_DIR|DAEMON_URL [EXECUTION_ID]\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    const char *execution_id = argc == 3 ? argv[2] : "cust-42";
    const char *ms_env = getenv("ONBOARDING_STEP_MS");
    long step_ms = ms_env ? atol(ms_env) : 300;
    const char *durability = getenv("ONBOARDING_DURABILITY"); /* NULL: "sync" */
    /* One line per step as it happens, also when stdout is a pipe. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    omium_store *store = NULL;
    if (strncmp(dir, "unix://", 7) == 0 || strncmp(dir, "http://", 7) == 0) {
        const char *key = getenv("OMIUM_API_KEY");
        check(omium_store_connect(dir, key && *key ? key : NULL, &store),
              "connecting to omium serve");
    } else {
        check(omium_store_open(dir, durability, &store), "opening the store");
    }
    omium_run *run = NULL;
    check(omium_store_begin(store, execution_id, "customer_onboarding", &run),
          "beginning the execution");

    /* Each step's result is the previous one plus what the step added: a small growing
     * state, as an agent's conversation is. */
    char state[1024] = "customer";
    for (size_t i = 0; i < STEP_COUNT; i++) {
        const char *name = STEPS[i].name;
        uint64_t seq = 0;
        check(omium_run_reserve(run, &seq), "reserving a step");

        bool found = false;
        omium_buffer recorded = {NULL, 0};
        check(omium_run_recorded(run, seq, name, &found, &recorded), name);
        if (found) {
            /* Done by an earlier run: use its result, do not run the step again. */
            snprintf(state, sizeof state, "%.*s", (int)recorded.len, (const char *)recorded.data);
            omium_buffer_free(&recorded);
            printf("step %-18s replayed from the journal (not re-run)\n", name);
            continue;
        }

        sleep_ms(step_ms); /* the LLM call */
        char result[1024];
        int n = snprintf(result, sizeof result, "%s > %s by %s", state, name, STEPS[i].agent);
        if (n < 0 || (size_t)n >= sizeof result) {
            fprintf(stderr, "onboarding: the state outgrew its buffer\n");
            return 1;
        }
        char checkpoint_id[OMIUM_CHECKPOINT_ID_SIZE];
        check(omium_run_record(run, seq, name, (const uint8_t *)result, (size_t)n, checkpoint_id,
                               sizeof checkpoint_id),
              name);
        memcpy(state, result, (size_t)n + 1);
        printf("step %-18s ran (%ld ms), checkpoint %s\n", name, step_ms, checkpoint_id);
    }

    check(omium_run_complete(run, (const uint8_t *)state, strlen(state)), "completing the run");
    check(omium_run_free(run), "freeing the run");

    omium_buffer history = {NULL, 0};
    check(omium_store_history(store, execution_id, &history), "reading the history");
    printf("history: %s\n", (const char *)history.data); /* JSON; buffers end with a NUL */
    omium_buffer_free(&history);

    bool ok = false;
    check(omium_store_verify(store, execution_id, &ok, NULL), "verifying");
    printf("verify: %s\n", ok ? "ok" : "FAILED");
    check(omium_store_close(store), "closing the store");
    printf("completed %s: %s\n", execution_id, state);
    return ok ? 0 : 1;
}
