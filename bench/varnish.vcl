vcl 4.1;
# Varnish side of bench/edge.sh: a plain caching proxy in front of the same
# origin as kinema edge, with Varnish's defaults (which already coalesce
# concurrent misses). The origin port is substituted by the script.

backend origin {
    .host = "127.0.0.1";
    .port = "ORIGIN_PORT";
}

sub vcl_recv {
    # Cache even with a client Authorization/Cookie-free request only; the
    # benchmark sends neither, so the builtin VCL applies unchanged.
}
