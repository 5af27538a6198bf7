# The demo's policy, in OPA-Envoy's shape: data.envoy.authz.allow.
package envoy.authz

import rego.v1

default allow := false

# Public routes are open to everyone.
allow if input.stoa.route.name == "public"

# MCP tools: a caller may use its own tenant's tools, and anyone the public demo tenant's.
allow if input.stoa.tool.tenant == "demo"

allow if {
	input.stoa.tool.tenant != null
	input.stoa.tool.tenant == input.stoa.principal.tenant
}

# MCP resources and prompts: the same rule as tools.
allow if input.stoa.resource.tenant == "demo"

allow if input.stoa.prompt.tenant == "demo"

allow if {
	input.stoa.resource.tenant != null
	input.stoa.resource.tenant == input.stoa.principal.tenant
}

allow if {
	input.stoa.prompt.tenant != null
	input.stoa.prompt.tenant == input.stoa.principal.tenant
}

# The billing API: reading needs invoices:read, writing invoices:write.
allow if {
	input.parsed_path[0] == "api"
	input.attributes.request.http.method == "GET"
	"invoices:read" in input.stoa.principal.scopes
}

allow if {
	input.parsed_path[0] == "api"
	input.attributes.request.http.method == "POST"
	"invoices:write" in input.stoa.principal.scopes
}
