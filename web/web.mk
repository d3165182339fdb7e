# The dashboard page compiled into the daemon: web/dashboard.html becomes a byte array in
# $(BUILD)/gen/dashboard.c (od and sed only, both in every Debian base system), whose object
# joins the library through EXTRA_LIB_OBJ. Included by the top Makefile.

WEB_PAGE := web/dashboard.html
WEB_GEN  := $(BUILD)/gen/dashboard.c
WEB_OBJ  := $(BUILD)/gen/dashboard.o
EXTRA_LIB_OBJ += $(WEB_OBJ)

$(WEB_GEN): $(WEB_PAGE) web/web.mk
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  GEN   $@")
	$(Q){ echo '/* Generated from $(WEB_PAGE) by web/web.mk; do not edit. */'; \
	  echo '#include <stddef.h>'; \
	  echo 'extern const unsigned char pl_dashboard_html[];'; \
	  echo 'extern const size_t pl_dashboard_html_len;'; \
	  echo 'const unsigned char pl_dashboard_html[] = {'; \
	  od -An -v -tx1 $(WEB_PAGE) | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '};'; \
	  echo 'const size_t pl_dashboard_html_len = sizeof(pl_dashboard_html);'; \
	} >$@.tmp && mv $@.tmp $@

$(WEB_OBJ): $(WEB_GEN)
	@$(if $(Q),echo "  CC    $<")
	$(Q)$(CC) $(CFLAGS) -c -o $@ $<
