// import-trackhar.mjs turns TrackHAR's adapters (TypeScript, CC0-1.0) into
// phonehome's endpoint table, trackhar.json: per endpoint, the URLs, the
// decoding steps and, per field, the kind of personal data it carries and
// TrackHAR's reasoning. TrackHAR's property names are mapped to phonehome's
// kinds here, once; fields whose property has no kind (a session id, a
// battery level) are left out.
//
// Usage, from a directory where the typescript package is installed
// (npm install --no-save typescript@5):
//
//	node PATH/TO/import-trackhar.mjs TRACKHAR_CHECKOUT "tweaselORG/TrackHAR @ COMMIT" > PATH/TO/trackhar.json
//
// TRACKHAR_CHECKOUT is a directory holding TrackHAR's src/ (adapters/,
// common/). The output is sorted and stable, so a re-import shows as a diff.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { createRequire } from 'node:module';

// typescript is looked up from the current directory, where it was installed.
const ts = createRequire(path.join(process.cwd(), 'x.js'))('typescript');

const [root, source] = process.argv.slice(2);
if (!root || !source) {
    console.error('usage: node import-trackhar.mjs TRACKHAR_CHECKOUT "tweaselORG/TrackHAR @ COMMIT" > trackhar.json');
    process.exit(2);
}

// TrackHAR property -> phonehome kind. host_app names the app whose SDK
// sends the request: it says whose flow it is, not data about the person.
const kinds = {
    advertisingId: 'advertising_id',
    hashedAdvertisingId: 'advertising_id',
    deviceId: 'device_id',
    developerScopedId: 'install_id',
    installationId: 'install_id',
    pushNotificationToken: 'install_id',
    macAddress: 'mac_address',
    userId: 'account_id',
    latitude: 'location',
    longitude: 'location',
    viewedPage: 'visited_url',
    websiteUrl: 'visited_url',
    model: 'device_model',
    manufacturer: 'manufacturer',
    osVersion: 'os_version',
    appVersion: 'app_version',
    language: 'locale',
    country: 'locale',
    timezone: 'timezone',
    carrier: 'carrier',
    networkConnectionType: 'network_type',
    screenWidth: 'screen_size',
    screenHeight: 'screen_size',
    appId: 'host_app',
};

// Transpile src/ into a temporary directory of ES modules, then load them.
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'trackhar-'));
const walk = (dir) =>
    fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
        e.isDirectory() ? walk(path.join(dir, e.name)) : e.name.endsWith('.ts') ? [path.join(dir, e.name)] : []
    );
const src = path.join(root, 'src');
for (const file of walk(src)) {
    const rel = path.relative(src, file).replace(/\.ts$/, '.mjs');
    let js = ts.transpileModule(fs.readFileSync(file, 'utf8'), {
        compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false },
    }).outputText;
    js = js.replace(/from '(\.[^']+)'/g, (_, p) => `from '${p}.mjs'`);
    fs.mkdirSync(path.dirname(path.join(tmp, rel)), { recursive: true });
    fs.writeFileSync(path.join(tmp, rel), js);
}
const { allAdapters } = await import(pathToFileURL(path.join(tmp, 'common', 'adapters.mjs')).href);
fs.rmSync(tmp, { recursive: true, force: true });

const text = (x) => (x instanceof RegExp ? { regex: x.source, flags: x.flags } : x);
let fields = 0, skipped = 0;
const endpoints = allAdapters.map((a) => {
    const out = {
        tracker: a.tracker.slug,
        owner: a.tracker.name,
        adapter: a.slug,
        name: a.name,
        urls: a.endpointUrls.filter((u) => typeof u === 'string'),
        url_patterns: a.endpointUrls.filter((u) => u instanceof RegExp).map((u) => u.source),
        decoding: (a.decodingSteps || []).map((s) => ({ ...s, options: s.options && Object.fromEntries(Object.entries(s.options).map(([k, v]) => [k, text(v)])) })),
        fields: [],
    };
    if (a.match) out.only_when = a.match.toString();
    for (const [property, dp] of Object.entries(a.containedDataPaths || {})) {
        for (const p of [dp].flat()) {
            const kind = kinds[property];
            if (!kind) {
                skipped++;
                continue;
            }
            fields++;
            const f = { kind, property, context: p.context, path: p.path, reasoning: p.reasoning };
            if (p.onlyIf) f.only_if = text(p.onlyIf);
            if (p.notIf) f.not_if = text(p.notIf);
            out.fields.push(f);
        }
    }
    out.fields.sort((x, y) => (x.context + x.path + x.kind).localeCompare(y.context + y.path + y.kind));
    return out;
});
endpoints.sort((x, y) => (x.tracker + '/' + x.adapter).localeCompare(y.tracker + '/' + y.adapter));
process.stdout.write(
    JSON.stringify(
        {
            source: source + ', src/adapters (CC0-1.0, https://github.com/tweaselORG/TrackHAR): transcribed by import-trackhar.mjs',
            licence: 'CC0-1.0',
            fields,
            fields_without_a_kind: skipped,
            endpoints,
        },
        null,
        1
    ) + '\n'
);
