# STOA Link's built-in default policy: what a fresh install enforces when
# policy.enabled is true and policy.paths is empty. It answers
# data.envoy.authz.allow (OPA-Envoy's shape) and is deliberately small:
#
#   - a caller whose credential Link verified (JWT, API key, mTLS) is allowed;
#   - an anonymous caller is allowed only on a route declared `anonymous: true`
#     in Link's settings, or for a tool, MCP resource or prompt of a tenant
#     listed in mcp.public_tenants;
#   - everything else is refused (403).
#
# Link fills data.stoa.default_policy from its settings when it loads this file.
# Replace it with your own policy by setting policy.paths (see docs/deploy.md).
package envoy.authz

import rego.v1

default allow := false

allow if input.stoa.principal.kind != "anonymous"

allow if {
	input.stoa.principal.kind == "anonymous"
	input.stoa.route.name in data.stoa.default_policy.anonymous_routes
}

allow if {
	input.stoa.principal.kind == "anonymous"
	input.stoa.tool.tenant in data.stoa.default_policy.public_tenants
}

allow if {
	input.stoa.principal.kind == "anonymous"
	input.stoa.resource.tenant in data.stoa.default_policy.public_tenants
}

allow if {
	input.stoa.principal.kind == "anonymous"
	input.stoa.prompt.tenant in data.stoa.default_policy.public_tenants
}
