"""HTTP only: the Litestar app, controllers per audience, auth guards, errors as problem+json."""
