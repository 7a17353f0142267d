# roost: `make` builds build/roost (release), `make run` starts it, `make test` runs every test.
# Variants: build/ (release, -O2), build/asan/ (ASan + UBSan, what the end-to-end tests run),
# build/fuzz/ (clang libFuzzer targets), build/tsan/ (ThreadSanitizer: `make tsan`, not in CI).
# llhttp is compiled from Debian's node-llhttp sources.

CC       ?= cc
CLANG    ?= clang
LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp

WARN     := -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter
PG_INC   := $(shell pg_config --includedir 2>/dev/null || echo /usr/include/postgresql)
BASEFLAGS := -std=gnu11 -D_GNU_SOURCE -pthread -Iinclude -Isrc -I$(LLHTTP_INC) -I$(PG_INC) -MMD -MP
LIBS     := -luv -lhiredis -lcurl -ljansson -lssl -lcrypto -lsqlite3 -lpq -ldeflate -lz -lpthread -lm
# libvips for the process-image job type (src/app/job_media.c); its headers as system headers
VIPS_CFLAGS := $(patsubst -I%,-isystem %,$(shell pkg-config --cflags vips 2>/dev/null))
BASEFLAGS += $(VIPS_CFLAGS)
LIBS     += $(shell pkg-config --libs vips 2>/dev/null)

LIB_SRC  := $(sort $(wildcard src/base/*.c src/net/*.c src/core/*.c src/http/*.c src/mw/*.c \
                               src/ws/*.c src/redis/*.c src/shared/*.c src/hub/*.c src/jobs/*.c src/db/*.c src/fetch/*.c))
APP_SRC  := $(sort $(wildcard src/app/*.c))
UNIT_SRC := $(sort $(wildcard tests/unit/*.c))
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
LLHTTP_C := $(LLHTTP_SRC)/api.c $(LLHTTP_SRC)/http.c $(LLHTTP_SRC)/llhttp.c

RELEASE_FLAGS := -O2 -g $(WARN) $(BASEFLAGS)
ASAN_FLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
                 -fno-sanitize-recover=undefined $(WARN) $(BASEFLAGS)
FUZZ_FLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
                 -DROOST_FUZZ $(WARN) $(BASEFLAGS)
TSAN_FLAGS    := -O1 -g -fno-omit-frame-pointer -fsanitize=thread $(WARN) \
                 -Wno-missing-field-initializers $(BASEFLAGS)

.PHONY: all asan fuzz fuzz-long tsan tsan-e2e run test unit layers format format-check clean deps
all: build/roost

deps:
	@bash scripts/deps.sh

# $(1) = output folder, $(2) = compiler, $(3) = flags
define variant
$(1)/obj/src/app/pages.o: $(wildcard web/*.html) $(wildcard node_modules/uplot/dist/uPlot.*)
$(1)/obj/%.o: %.c
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$(2) $(3) -c $$< -o $$@
$(1)/llhttp/%.o: $(LLHTTP_SRC)/%.c
	@mkdir -p $$(dir $$@)
	@echo "  CC    $$@"
	@$(2) $$(filter-out -Werror -Wshadow,$(3)) -w -c $$< -o $$@
$(1)/libroost.a: $(patsubst %.c,$(1)/obj/%.o,$(LIB_SRC)) $(patsubst $(LLHTTP_SRC)/%.c,$(1)/llhttp/%.o,$(LLHTTP_C))
	@rm -f $$@
	ar rcs $$@ $$^
$(1)/roost: $(patsubst %.c,$(1)/obj/%.o,$(APP_SRC)) $(1)/libroost.a
	$(2) $(3) -o $$@ $$^ $(LIBS)
$(1)/unit_tests: $(patsubst %.c,$(1)/obj/%.o,$(UNIT_SRC)) $(1)/libroost.a
	$(2) $(3) -o $$@ $$^ $(LIBS)
-include $(shell find $(1) -name '*.d' 2>/dev/null)
endef

$(eval $(call variant,build,$(CC),$(RELEASE_FLAGS)))
$(eval $(call variant,build/asan,$(CC),$(ASAN_FLAGS)))
$(eval $(call variant,build/fuzz,$(CLANG),$(FUZZ_FLAGS)))
$(eval $(call variant,build/tsan,$(CLANG),$(TSAN_FLAGS)))

FUZZ_BINS := $(patsubst tests/fuzz/%.c,build/fuzz/%,$(FUZZ_SRC))
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libroost.a
	$(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/libroost.a $(LIBS)

asan: build/asan/roost build/asan/unit_tests
fuzz: $(FUZZ_BINS)
# Long fuzzing: FUZZ_SECONDS (default 600) per target, growing and minimizing the committed
# corpus in tests/fuzz/corpus/<target>/ (see tests/fuzz/long.sh).
fuzz-long: fuzz
	bash tests/fuzz/long.sh
# ThreadSanitizer build; `make tsan-e2e` runs the end-to-end suite on it (a report fails the test).
# Thread leaks are not reported: the drain deadline's _exit leaves blocked workers on purpose;
# tests/tsan.supp names the uninstrumented libraries whose hand-offs TSan cannot see.
tsan: build/tsan/roost
tsan-e2e: tsan
	ROOST_BIN=$(CURDIR)/build/tsan/roost \
		TSAN_OPTIONS="report_thread_leaks=0 halt_on_error=0 suppressions=$(CURDIR)/tests/tsan.supp" \
		/usr/bin/python3 -m pytest tests/e2e -q -p no:cacheprovider

run: deps build/roost
	./build/roost $(ARGS)

unit: build/unit_tests
	./build/unit_tests

# A layer includes only headers of its own layer and those below (scripts/check-layers.sh).
layers:
	@bash scripts/check-layers.sh

test: deps layers
	$(MAKE) build/roost build/unit_tests asan fuzz
	bash tests/run.sh

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build
