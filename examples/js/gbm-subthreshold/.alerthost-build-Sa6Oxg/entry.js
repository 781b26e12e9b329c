import * as handler from "../handler.js";
import { component } from "../../../../guest-sdk/js/src/component.js";
const exported = component(handler);
export function init(params) {
  return exported.init(params);
}
export function handle(msg) {
  return exported.handle(msg);
}
