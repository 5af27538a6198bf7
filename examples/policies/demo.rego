# Demo policy for STOA Link (OPA-Envoy compatible: query data.envoy.authz.allow).
#
#   GET /public/...            anyone, even without credentials
#   GET /invoices/...          role reader, writer or admin
#   POST /invoices             role writer or admin
#   DELETE /invoices/{id}      role admin
#   anything else              refused (403)
package envoy.authz

import rego.v1

default allow := false

# role -> method -> first path segments the role may call with that method.
grants := {
	"reader": {"GET": {"invoices"}},
	"writer": {"GET": {"invoices"}, "POST": {"invoices"}},
	"admin": {"GET": {"invoices"}, "POST": {"invoices"}, "DELETE": {"invoices"}},
}

allow if {
	input.attributes.request.http.method == "GET"
	input.parsed_path[0] == "public"
}

allow if {
	some role in input.stoa.principal.roles
	input.parsed_path[0] in grants[role][input.attributes.request.http.method]
}
