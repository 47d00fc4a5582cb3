/**
 * An upstream's tools as Countersign holds and lists them: each with its tier, its input-schema check
 * and the name it is listed under (tool-names.ts), and the listed form, whose annotations say
 * Countersign's tier rather than the upstream's claims.
 */
import type { Tool } from '@modelcontextprotocol/sdk/types.js';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import type { JsonSchemaType, JsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/types.js';
import type { Tier } from '../types.ts';
import type { TierRule } from './config.ts';
import { tierFor } from './tiers.ts';
import { exposedToolName } from './tool-names.ts';

export interface UpstreamTool {
  tool: Tool;
  /** The name Countersign lists it under (tool-names.ts). */
  exposed: string;
  tier: Tier;
  validate: JsonSchemaValidator<unknown>;
}

export class ToolCatalogue {
  readonly #upstream: string;
  readonly #rules: readonly TierRule[];
  readonly #log: ((line: string) => void) | undefined;
  readonly #validators = new AjvJsonSchemaValidator();

  constructor(upstream: string, rules: readonly TierRule[], log?: (line: string) => void) {
    this.#upstream = upstream;
    this.#rules = rules;
    this.#log = log;
  }

  /**
   * The tools by the names Countersign lists. Names are stable and distinct by construction; an
   * upstream that publishes two tools whose names still meet (one named like another's rewritten
   * name) loses both, rather than one call reaching the other tool.
   */
  index(tools: readonly Tool[]): Map<string, UpstreamTool> {
    const byName = new Map<string, UpstreamTool>();
    const clashing = new Set<string>();
    for (const tool of tools) {
      const entry = this.#describe(tool);
      if (byName.has(entry.exposed)) clashing.add(entry.exposed);
      else byName.set(entry.exposed, entry);
    }
    for (const name of clashing) {
      byName.delete(name);
      this.#log?.(`upstream ${this.#upstream}: two of its tools would both be listed as ${name}; both are left out`);
    }
    return byName;
  }

  /** The tools as Countersign lists them: tier 4 is left out. */
  listed(tools: Map<string, UpstreamTool>): Tool[] {
    return [...tools.values()].filter((t) => t.tier < 4).map((t) => this.#exposed(t));
  }

  #describe(tool: Tool): UpstreamTool {
    let validate: JsonSchemaValidator<unknown>;
    try {
      validate = this.#validators.getValidator(tool.inputSchema as JsonSchemaType);
    } catch {
      validate = () => ({ valid: false, data: undefined, errorMessage: 'unusable schema' });
    }
    return { tool, exposed: exposedToolName(this.#upstream, tool.name), tier: tierFor(tool.name, tool.annotations, this.#rules), validate };
  }

  /**
   * The tool as Countersign lists it. The upstream's own name and the upstream stay readable where a
   * person and the model look: the title, the description, and `_meta`.
   */
  #exposed({ tool, exposed, tier }: UpstreamTool): Tool {
    const { outputSchema: _outputSchema, _meta: _upstreamMeta, ...rest } = tool;
    return {
      ...rest,
      inputSchema: listableSchema(tool.inputSchema),
      name: exposed,
      title: tool.title ?? tool.annotations?.title ?? tool.name,
      description: `${tool.description ?? tool.name} (tool ${tool.name} of ${this.#upstream})`,
      _meta: { 'countersign/upstream': this.#upstream, 'countersign/tool': tool.name },
      annotations: {
        ...(tool.annotations?.title ? { title: tool.annotations.title } : {}),
        readOnlyHint: tier === 1,
        destructiveHint: tier >= 3,
        openWorldHint: true,
      },
    };
  }
}

/**
 * The input schema as listed: Claude's API refuses a tool whose input schema has `oneOf`, `anyOf` or
 * `allOf` at its top level, and with it the whole request, so those are left out of the listed schema.
 * Calls are still checked against the upstream's whole schema (`#describe`).
 */
function listableSchema(schema: Tool['inputSchema']): Tool['inputSchema'] {
  const { oneOf: _one, anyOf: _any, allOf: _all, ...rest } = schema as Tool['inputSchema'] & Record<'oneOf' | 'anyOf' | 'allOf', unknown>;
  return rest;
}
