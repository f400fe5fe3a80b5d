"""Who may call the API (docs/decisions.md, "API authentication"): who a request acts as
(identity), the signed tokens and keys that say so (tokens), how a request's token is
checked (authentication), the scope each route declares (scopes) and what each kind of
token may do (authorization)."""
