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
# One version (the VERSION file): the shared library's soname, roost.pc and `roost --version`.
VERSION  := $(shell cat VERSION)
BASEFLAGS += -DROOST_VERSION='"$(VERSION)"'
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

# Packagers' flags (dpkg-buildflags: hardening, debian/rules) on the release build and the
# shared library; empty in a developer's shell, and never on the sanitizer builds' compiles.
RELEASE_FLAGS += $(CPPFLAGS) $(CFLAGS)
LIBS     += $(LDFLAGS)

.PHONY: install uninstall shared
.PHONY: all asan fuzz fuzz-long tsan tsan-e2e run test unit layers format format-check clean deps
all: build/roost
# The manual page, written by the binary from its own flag table and routes (src/app/man.c), so
# that it never drifts from --help; its log lines (the store it opens) go to build/roost.1.log.
all: build/roost.1
build/roost.1: build/roost
	@echo "  MAN   $@"
	@./build/roost --help-man >$@.tmp 2>$@.log || { cat $@.log; rm -f $@.tmp; exit 1; }
	@mv $@.tmp $@
install: build/roost.1

deps:
	@bash scripts/deps.sh

# $(1) = output folder, $(2) = compiler, $(3) = flags
define variant
$(1)/obj/src/base/version.o: VERSION
$(1)/obj/src/app/pages.o: $(wildcard web/*.html) $(wildcard node_modules/uplot/dist/uPlot.*)
$(1)/obj/src/app/routes_docs.o: web/docs.html $(wildcard node_modules/swagger-ui-dist/swagger-ui*)
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

# ---- the installed library: `make install` (PREFIX, DESTDIR), `make uninstall` ----
# libroost.so and the installed libroost.a are built from their own objects (build/pic/:
# -fPIC, every symbol hidden unless roost.h declares it), so build/roost and the benchmarks keep
# their flags. src/libroost.map is the export list: roost_* and nothing else (llhttp stays in).
PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DOCDIR     ?= $(PREFIX)/share/doc/roost
MANDIR     ?= $(PREFIX)/share/man
VER_MAJOR  := $(word 1,$(subst ., ,$(VERSION)))
VER_MINOR  := $(word 2,$(subst ., ,$(VERSION)))
SONAME     := libroost.so.$(VER_MAJOR)
SHLIB      := libroost.so.$(VER_MAJOR).$(VER_MINOR)
PIC_FLAGS  := $(RELEASE_FLAGS) -fPIC -fvisibility=hidden
$(eval $(call variant,build/pic,$(CC),$(PIC_FLAGS)))
PIC_OBJS   := $(patsubst %.c,build/pic/obj/%.o,$(LIB_SRC)) \
              $(patsubst $(LLHTTP_SRC)/%.c,build/pic/llhttp/%.o,$(LLHTTP_C))
build/pic/$(SHLIB): $(PIC_OBJS) src/libroost.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--version-script=src/libroost.map \
		-Wl,--no-undefined -Wl,--as-needed -o $@ $(PIC_OBJS) $(LIBS)
shared: build/pic/$(SHLIB) build/pic/libroost.a

# roost.pc names its folders from ${prefix} when they are under it (pkg-config can relocate it).
PC_LIBDIR     = $(patsubst $(PREFIX)/%,$${prefix}/%,$(LIBDIR))
PC_INCLUDEDIR = $(patsubst $(PREFIX)/%,$${prefix}/%,$(INCLUDEDIR))
# What install puts, relative to the prefix's folders (uninstall removes exactly this list).
INSTALL_HEADERS := $(wildcard include/roost/*.h)
INSTALL_DOCS    := README.md $(wildcard docs/*.md)
INSTALL_EXAMPLES := $(wildcard examples/*.c examples/README.md)
install: build/roost build/pic/$(SHLIB) build/pic/libroost.a
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR)/roost \
		$(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR)/examples
	install -m 755 build/roost $(DESTDIR)$(BINDIR)/roost
	install -m 644 build/pic/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SHLIB)
	ln -sf $(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libroost.so
	install -m 644 build/pic/libroost.a $(DESTDIR)$(LIBDIR)/libroost.a
	install -m 644 $(INSTALL_HEADERS) $(DESTDIR)$(INCLUDEDIR)/roost/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(PC_LIBDIR)|; s|@INCLUDEDIR@|$(PC_INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' roost.pc.in >$(DESTDIR)$(LIBDIR)/pkgconfig/roost.pc
	install -m 644 README.md $(DESTDIR)$(DOCDIR)/README.md
	install -m 644 $(filter docs/%,$(INSTALL_DOCS)) $(DESTDIR)$(DOCDIR)/docs/
	$(if $(INSTALL_EXAMPLES),install -m 644 $(INSTALL_EXAMPLES) $(DESTDIR)$(DOCDIR)/examples/)
	@# the man page (build/roost.1, made by its own rule) is installed when the build made one
	if [ -f build/roost.1 ]; then install -d $(DESTDIR)$(MANDIR)/man1 && \
		install -m 644 build/roost.1 $(DESTDIR)$(MANDIR)/man1/roost.1; fi
uninstall:
	rm -f $(DESTDIR)$(BINDIR)/roost $(DESTDIR)$(LIBDIR)/$(SHLIB) $(DESTDIR)$(LIBDIR)/$(SONAME) \
		$(DESTDIR)$(LIBDIR)/libroost.so $(DESTDIR)$(LIBDIR)/libroost.a \
		$(DESTDIR)$(LIBDIR)/pkgconfig/roost.pc $(DESTDIR)$(MANDIR)/man1/roost.1 \
		$(addprefix $(DESTDIR)$(INCLUDEDIR)/roost/,$(notdir $(INSTALL_HEADERS))) \
		$(addprefix $(DESTDIR)$(DOCDIR)/,$(INSTALL_DOCS)) \
		$(addprefix $(DESTDIR)$(DOCDIR)/examples/,$(notdir $(INSTALL_EXAMPLES)))
	rmdir $(DESTDIR)$(INCLUDEDIR)/roost $(DESTDIR)$(DOCDIR)/docs $(DESTDIR)$(DOCDIR)/examples \
		$(DESTDIR)$(DOCDIR) 2>/dev/null || true

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
	$(MAKE) build/roost build/unit_tests asan fuzz shared
	bash tests/run.sh

FORMAT_FILES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_FILES)
format-check:
	clang-format --dry-run --Werror $(FORMAT_FILES)

clean:
	rm -rf build
