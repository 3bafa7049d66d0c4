// The OpenID Connect provider Engram's tests sign in at: panva oidc-provider on 127.0.0.1.
//
// Configured by environment variables (all optional):
//   IDP_MODE                authentik (default) | spec
//   IDP_PORT                port to listen on (default 0: any free port; the issuer line names it)
// authentik mode — an Authentik-shaped upstream for Engram's sign-in facade:
//   IDP_SLUG                application slug (default engram): issuer http://127.0.0.1:PORT/application/o/SLUG/
//   IDP_CLIENT_ID, IDP_CLIENT_SECRET, IDP_REDIRECT_URIS (comma-separated): the one static client
//   IDP_LOOPBACK_ANY_PORT   false (default) | true: a loopback redirect URI matches on any port (the client
//                           becomes `native`, so devInteractions asks for consent every time; Authentik does
//                           this with a `regex` redirect URI)
//   IDP_CLIENT_AUTH_METHOD  client_secret_basic (default) | client_secret_post
//   IDP_ADVERTISE_AUTH_METHODS own (default: discovery lists what the client may use) | both
//   IDP_ID_TOKEN_ALG        RS256 (default) | HS256 (signed with the client secret, empty JWKS: Authentik
//                           without a signing key)
//   IDP_SIGNING_KEY         published (default) | unpublished (tokens are signed with a second RSA key that
//                           the JWKS leaves out)
//   IDP_CLAIMS_IN_ID_TOKEN  true (default) | false (the ID token carries sub only; userinfo has the rest)
//   IDP_ACCOUNTS            JSON {"login": {"email": …, "email_verified": …, "groups": […], "name": …}}
//                           merged over the built-in accounts
// spec mode — an MCP-style authorization server that Engram trusts directly:
//   IDP_RESOURCES           comma-separated resource indicators accepted (default: any http(s) URL)
//   IDP_SCOPES              extra scopes clients may ask for (space-separated)
//
// Logins at the development form accept any password. `alice` → alice@example.com (groups engram-users,
// admins), `bob` → bob@example.com (engram-users), `outsider` (no groups), `unverified`
// (email_verified false); any other login → <login>@example.com, verified, no groups. In authentik mode
// `sub` is a hash of the login (Authentik's "hashed user id"), never the email.
//
// Prints one JSON line {"issuer": …, "port": …, "mode": …} once listening; exits on SIGTERM or SIGINT.

import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const env = process.env;
const mode = env.IDP_MODE ?? 'authentik';
if (!['authentik', 'spec'].includes(mode)) fail(`IDP_MODE must be authentik or spec, not ${mode}`);

const BUILT_IN_ACCOUNTS = {
  alice: { groups: ['engram-users', 'admins'] },
  bob: { groups: ['engram-users'] },
  outsider: { groups: [] },
  unverified: { email_verified: false, groups: ['engram-users'] },
};
const accounts = { ...BUILT_IN_ACCOUNTS, ...parseJson('IDP_ACCOUNTS', {}) };

function fail(message) {
  process.stderr.write(`provider.mjs: ${message}\n`);
  process.exit(2);
}

function parseJson(name, fallback) {
  if (!env[name]) return fallback;
  try {
    return JSON.parse(env[name]);
  } catch (error) {
    return fail(`${name} is not JSON: ${error.message}`);
  }
}

function list(value) {
  return (value ?? '').split(/[\s,]+/).filter(Boolean);
}

function profileOf(login) {
  const entry = accounts[login] ?? {};
  return {
    email: entry.email ?? `${login}@example.com`,
    email_verified: entry.email_verified ?? true,
    name: entry.name ?? login.charAt(0).toUpperCase() + login.slice(1),
    given_name: entry.name ?? login.charAt(0).toUpperCase() + login.slice(1),
    preferred_username: login,
    nickname: login,
    groups: entry.groups ?? [],
  };
}

function rsaKey(kid) {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
}

// Claims per scope, as Authentik's default scope mappings return them.
const CLAIMS = {
  openid: ['sub'],
  email: ['email', 'email_verified'],
  profile: ['name', 'given_name', 'preferred_username', 'nickname', 'groups'],
};

function claimsFor(scope) {
  const scopes = new Set(typeof scope === 'string' ? scope.split(' ') : [...(scope ?? [])]);
  return Object.entries(CLAIMS).filter(([name]) => scopes.has(name)).flatMap(([, names]) => names);
}

function pick(source, names) {
  return Object.fromEntries(names.filter((name) => name in source).map((name) => [name, source[name]]));
}

// A grant with whatever the request asked for: Authentik's implicit-consent flow, and a spec server that
// trusts every client. `prompt=consent` still shows devInteractions' consent form.
async function autoGrant(ctx) {
  const { oidc } = ctx;
  const grantId = oidc.result?.consent?.grantId || oidc.session.grantIdFor(oidc.client.clientId);
  const grant = (grantId && (await oidc.provider.Grant.find(grantId)))
    || new oidc.provider.Grant({ clientId: oidc.client.clientId, accountId: oidc.session.accountId });
  const requested = [...oidc.requestParamScopes].join(' ');
  grant.addOIDCScope(requested);
  for (const indicator of Object.keys(oidc.resourceServers ?? {})) {
    grant.addResourceScope(indicator, requested);
  }
  await grant.save();
  return grant;
}

async function grantedScope(ctx, token) {
  const grant = ctx.oidc.entities.Grant ?? (await ctx.oidc.provider.Grant.find(token.grantId));
  return grant?.getOIDCScope() ?? '';
}

function authentikConfiguration(port) {
  const slug = env.IDP_SLUG ?? 'engram';
  const clientId = env.IDP_CLIENT_ID ?? 'engram';
  const clientSecret = env.IDP_CLIENT_SECRET ?? 'engram-secret-that-is-long-enough-for-hs256';
  const redirectUris = list(env.IDP_REDIRECT_URIS);
  if (redirectUris.length === 0) fail('IDP_REDIRECT_URIS is required in authentik mode');
  const authMethod = env.IDP_CLIENT_AUTH_METHOD ?? 'client_secret_basic';
  // Auth0's way: discovery lists both methods, the application accepts only the one it is set to.
  const advertiseBoth = (env.IDP_ADVERTISE_AUTH_METHODS ?? 'own') === 'both';
  const idTokenAlg = env.IDP_ID_TOKEN_ALG ?? 'RS256';
  if (!['RS256', 'HS256'].includes(idTokenAlg)) fail('IDP_ID_TOKEN_ALG must be RS256 or HS256');
  const signingKey = env.IDP_SIGNING_KEY ?? 'published';
  if (!['published', 'unpublished'].includes(signingKey)) fail('IDP_SIGNING_KEY must be published or unpublished');
  const claimsInIdToken = (env.IDP_CLAIMS_IN_ID_TOKEN ?? 'true') !== 'false';
  const anyPort = (env.IDP_LOOPBACK_ANY_PORT ?? 'false') === 'true';

  const published = rsaKey(crypto.randomUUID());
  // The keystore signs with the first key that fits the algorithm: the unpublished one when asked for.
  const keys = signingKey === 'unpublished' ? [rsaKey(crypto.randomUUID()), published] : [published];
  const publishedKids = idTokenAlg === 'HS256' ? new Set() : new Set([published.kid]);
  // Authentik has no resource indicators; every access token is a JWT for the client itself.
  const resource = `urn:engram-test:authentik:${slug}`;
  const accessTokenSigning = idTokenAlg === 'HS256' ? { alg: 'HS256', key: clientSecret } : { alg: 'RS256' };

  return {
    issuer: `http://127.0.0.1:${port}/application/o/${slug}/`,
    // Shared endpoints outside the application's path, as Authentik serves them (the server below
    // mounts the provider at /application/o).
    mountPath: '/application/o',
    routes: {
      authorization: '/authorize/',
      token: '/token/',
      userinfo: '/userinfo/',
      revocation: '/revoke/',
      introspection: '/introspect/',
      jwks: `/${slug}/jwks/`,
      end_session: `/${slug}/end-session/`,
    },
    discoveryPath: `/application/o/${slug}/.well-known/openid-configuration`,
    publishedKids,
    postOnly: authMethod === 'client_secret_post' ? '/application/o/token/' : null,
    jwtUserinfo: { path: '/application/o/userinfo/', clientSecret, idTokenAlg },
    configuration: {
      jwks: { keys },
      clients: [
        {
          client_id: clientId,
          client_secret: clientSecret,
          redirect_uris: redirectUris,
          grant_types: ['authorization_code', 'refresh_token'],
          response_types: ['code'],
          token_endpoint_auth_method: authMethod,
          id_token_signed_response_alg: idTokenAlg,
          subject_type: 'pairwise',
          application_type: anyPort ? 'native' : 'web',
        },
      ],
      clientAuthMethods: authMethod === 'client_secret_post' && !advertiseBoth
        ? ['client_secret_post'] : ['client_secret_basic', 'client_secret_post'],
      subjectTypes: ['public', 'pairwise'],
      pairwiseIdentifier: async (_ctx, accountId, client) => crypto
        .createHash('sha256').update(`${client.sectorIdentifier}:${accountId}`).digest('hex'),
      enabledJWA: { idTokenSigningAlgValues: ['RS256', 'HS256'] },
      scopes: ['openid', 'email', 'profile', 'offline_access'],
      claims: CLAIMS,
      conformIdTokenClaims: false,
      pkce: { required: () => true },
      loadExistingGrant: autoGrant,
      // oidc-provider keeps offline_access only with prompt=consent; Authentik needs no prompt, and
      // this peer simply issues a refresh token on every code exchange.
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      features: {
        devInteractions: { enabled: true },
        pushedAuthorizationRequests: { enabled: false },
        revocation: { enabled: true },
        introspection: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async () => resource,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, indicator) => {
            if (indicator !== resource) throw new errors.InvalidTarget();
            // No scope: Authentik's access tokens carry no `scope` claim.
            return { audience: clientId, scope: '', accessTokenFormat: 'jwt', accessTokenTTL: 300, jwt: { sign: accessTokenSigning } };
          },
        },
      },
      extraTokenClaims: async (ctx, token) => {
        const profile = profileOf(token.accountId);
        return { azp: token.clientId, ...pick(profile, claimsFor(await grantedScope(ctx, token)).filter((c) => c !== 'sub')) };
      },
      findAccount: async (_ctx, login) => ({
        accountId: login,
        async claims(use, scope) {
          if (use === 'id_token' && !claimsInIdToken) return { sub: login };
          return { sub: login, ...pick(profileOf(login), claimsFor(scope)) };
        },
      }),
    },
  };
}

function specConfiguration(port) {
  const resources = list(env.IDP_RESOURCES);
  const memoryScopes = ['memories:read', 'memories:write', 'memories:delete'];
  const extraScopes = list(env.IDP_SCOPES);
  const resourceScopes = [...memoryScopes, ...extraScopes].join(' ');
  return {
    issuer: `http://127.0.0.1:${port}`,
    mountPath: '',
    routes: {},
    discoveryPath: null,
    publishedKids: null,
    postOnly: null,
    jwtUserinfo: null,
    configuration: {
      jwks: { keys: [rsaKey(crypto.randomUUID())] },
      scopes: ['openid', 'email', 'profile', 'offline_access', ...memoryScopes, ...extraScopes],
      claims: CLAIMS,
      pkce: { required: () => true },
      loadExistingGrant: autoGrant,
      issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
      features: {
        devInteractions: { enabled: true },
        registration: { enabled: true },
        revocation: { enabled: true },
        resourceIndicators: {
          enabled: true,
          defaultResource: async (_ctx, _client, oneOf) => oneOf,
          useGrantedResource: async () => true,
          getResourceServerInfo: async (_ctx, indicator) => {
            const known = resources.length ? resources.includes(indicator) : /^https?:\/\//.test(indicator);
            if (!known) throw new errors.InvalidTarget();
            return { audience: indicator, scope: resourceScopes, accessTokenFormat: 'jwt', accessTokenTTL: 300 };
          },
        },
      },
      extraTokenClaims: async (_ctx, token) => pick(profileOf(token.accountId), ['email', 'email_verified']),
      findAccount: async (_ctx, login) => ({
        accountId: login,
        async claims(_use, scope) {
          return { sub: login, ...pick(profileOf(login), claimsFor(scope)) };
        },
      }),
    },
  };
}

function verifyJwt(token, { keys, clientSecret, idTokenAlg }) {
  const [header, payload, signature] = token.split('.');
  if (!signature) return null;
  const input = Buffer.from(`${header}.${payload}`);
  const mac = Buffer.from(signature, 'base64url');
  let ok;
  if (idTokenAlg === 'HS256') {
    const expected = crypto.createHmac('sha256', clientSecret).update(input).digest();
    ok = expected.length === mac.length && crypto.timingSafeEqual(expected, mac);
  } else {
    ok = keys.some((jwk) => crypto.verify('sha256', input, crypto.createPublicKey({ key: jwk, format: 'jwk' }), mac));
  }
  if (!ok) return null;
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString());
  return claims.exp > Date.now() / 1000 ? claims : null;
}

// Authentik's userinfo endpoint accepts its JWT access tokens; oidc-provider's refuses any token with an
// audience, so this one answers for them with the claims the access token carries.
function jwtUserinfo(req, res, setup, issuer) {
  const match = /^Bearer (\S+)$/.exec(req.headers.authorization ?? '');
  const claims = match && match[1].split('.').length === 3 ? verifyJwt(match[1], setup) : null;
  res.setHeader('Cache-Control', 'no-store');
  if (!claims || claims.iss !== issuer) {
    res.statusCode = 401;
    res.setHeader('WWW-Authenticate', 'Bearer error="invalid_token"');
    res.end();
    return;
  }
  const { iss, aud, exp, iat, jti, client_id: clientId, azp, scope, ...rest } = claims;
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify(rest));
}

const server = http.createServer();
server.listen(Number(env.IDP_PORT ?? 0), '127.0.0.1', () => {
  const { port } = server.address();
  const setup = mode === 'spec' ? specConfiguration(port) : authentikConfiguration(port);
  const provider = new Provider(setup.issuer, {
    ...setup.configuration,
    routes: setup.routes,
    cookies: { keys: [crypto.randomBytes(32).toString('base64url')] },
    ttl: {
      AccessToken: 300, AuthorizationCode: 60, IdToken: 300, Interaction: 600, Session: 3600, Grant: 3600, RefreshToken: 86400,
    },
    renderError: async (ctx, out) => {
      ctx.type = 'json';
      ctx.body = out;
    },
  });
  // JWKS without the keys the mode keeps back (the unpublished key, or every key for HS256).
  if (setup.publishedKids) {
    provider.use(async (ctx, next) => {
      await next();
      if (ctx.oidc?.route === 'jwks' && ctx.body?.keys) {
        ctx.body = { keys: ctx.body.keys.filter((key) => setup.publishedKids.has(key.kid)) };
      }
    });
  }
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const { pathname } = new URL(req.url, setup.issuer);
    if (setup.postOnly && pathname === setup.postOnly && /^Basic /i.test(req.headers.authorization ?? '')) {
      // oidc-provider takes either method from any client; a provider that only knows post does not.
      res.statusCode = 401;
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ error: 'invalid_client', error_description: 'client_secret_basic is not supported' }));
      return;
    }
    if (setup.jwtUserinfo && pathname === setup.jwtUserinfo.path
        && /^Bearer [^.\s]+\.[^.\s]+\.[^.\s]+$/.test(req.headers.authorization ?? '')) {
      jwtUserinfo(req, res, { ...setup.jwtUserinfo, keys: setup.configuration.jwks.keys }, setup.issuer);
      return;
    }
    let url = req.url;
    if (pathname === setup.discoveryPath) {
      url = `${setup.mountPath}/.well-known/openid-configuration${url.slice(pathname.length)}`;
    } else if (setup.discoveryPath && pathname.startsWith(`${setup.mountPath}/.well-known/`)) {
      url = ''; // Authentik serves discovery per application only
    } else if (mode === 'spec' && pathname === '/.well-known/oauth-authorization-server') {
      url = `/.well-known/openid-configuration${url.slice(pathname.length)}`;
    }
    if (!url.startsWith(`${setup.mountPath}/`)) {
      res.statusCode = 404;
      res.end();
      return;
    }
    // oidc-provider derives its endpoints' URLs from originalUrl minus url: the mount path.
    req.originalUrl = url;
    req.url = url.slice(setup.mountPath.length);
    callback(req, res);
  });
  process.stdout.write(`${JSON.stringify({ issuer: setup.issuer, port, mode })}\n`);
});

function stop() {
  server.close();
  server.closeAllConnections();
  process.exit(0); // everything lives in memory: nothing to flush
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
