// The 3D view of a job's exported file (GLB, OBJ + MTL + PNG, or PLY), on three.js from ../vendor/.
//
// The files arrive as Blobs the page fetched with the token; the loaders see them through
// blob: URLs, and a LoadingManager maps the names a file refers to (an OBJ's .mtl, the .mtl's
// texture) onto the Blobs of the same names, so nothing is fetched from anywhere else.
// It draws only when something changed: a page of several jobs must not keep a core busy.

import * as THREE from 'three';
import { OrbitControls } from 'three/addons/controls/OrbitControls.js';
import { GLTFLoader } from 'three/addons/loaders/GLTFLoader.js';
import { MTLLoader } from 'three/addons/loaders/MTLLoader.js';
import { OBJLoader } from 'three/addons/loaders/OBJLoader.js';
import { PLYLoader } from 'three/addons/loaders/PLYLoader.js';
import { RoomEnvironment } from 'three/addons/environments/RoomEnvironment.js';

export class MeshViewer {
  constructor(host) {
    this.host = host;
    // preserveDrawingBuffer: a screenshot of the page shows the mesh, not an empty canvas.
    this.renderer = new THREE.WebGLRenderer({ antialias: true, alpha: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(Math.min(window.devicePixelRatio || 1, 2));
    this.renderer.toneMapping = THREE.NeutralToneMapping;
    host.append(this.renderer.domElement);

    this.scene = new THREE.Scene();
    const pmrem = new THREE.PMREMGenerator(this.renderer);
    this.scene.environment = pmrem.fromScene(new RoomEnvironment(), 0.04).texture;
    pmrem.dispose();
    this.camera = new THREE.PerspectiveCamera(32, 1, 0.01, 100);
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.enableDamping = true;
    this.controls.addEventListener('change', () => this.requestRender());

    this.object = null;
    this.urls = [];
    this.pending = false;
    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(host);
    this.resize();
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.host;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }

  requestRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.controls.update(); // with damping it moves on a little, asks for the next frame through 'change'
      this.renderer.render(this.scene, this.camera);
    });
  }

  // source: {format: 'glb'|'obj'|'ply', main: file name, files: Map(name -> Blob)}.
  // Resolves with what was drawn: {triangles, textured, textureSize}.
  async show(source) {
    this.clear();
    const byName = new Map();
    for (const [name, blob] of source.files) {
      const url = URL.createObjectURL(blob);
      this.urls.push(url);
      byName.set(name, url);
    }
    const manager = new THREE.LoadingManager();
    manager.setURLModifier((url) => {
      if (byName.has(url)) return url;
      const name = decodeURIComponent(url.split(/[?#]/)[0].split('/').pop());
      return byName.get(name) ?? url;
    });
    // Textures an .mtl names load after OBJLoader resolves: wait for the manager to be idle.
    const track = { loaded: 0, total: 0, waiters: [] };
    manager.onProgress = (_, loaded, total) => Object.assign(track, { loaded, total });
    manager.onLoad = () => track.waiters.splice(0).forEach((resolve) => resolve());
    const idle = () => (track.loaded >= track.total ? Promise.resolve() : new Promise((r) => track.waiters.push(r)));
    const main = byName.get(source.main);
    let object;
    if (source.format === 'glb') {
      object = (await new GLTFLoader(manager).loadAsync(main)).scene;
    } else if (source.format === 'obj') {
      const loader = new OBJLoader(manager);
      const mtl = [...source.files.keys()].find((n) => n.endsWith('.mtl'));
      if (mtl) {
        const materials = await new MTLLoader(manager).loadAsync(byName.get(mtl));
        materials.preload();
        loader.setMaterials(materials);
      }
      object = await loader.loadAsync(main);
      await idle();
    } else if (source.format === 'ply') {
      const geometry = await new PLYLoader(manager).loadAsync(main);
      geometry.computeVertexNormals();
      const material = new THREE.MeshStandardMaterial({
        vertexColors: geometry.hasAttribute('color'), roughness: 0.85, metalness: 0,
      });
      object = new THREE.Mesh(geometry, material);
    } else {
      throw new Error(`no viewer for .${source.format} files`);
    }
    this.object = object;
    this.scene.add(object);
    this.frame(object);
    this.renderer.render(this.scene, this.camera);
    return describe(object);
  }

  // The object from the front (+Z, the photo's side in the glTF frame imesh exports in), a little
  // above, its box filling most of the view; turning it keeps it inside (the bounding sphere's margin).
  frame(object) {
    const box = new THREE.Box3().setFromObject(object);
    const center = box.getCenter(new THREE.Vector3());
    const size = box.getSize(new THREE.Vector3());
    object.position.sub(center);
    const tan = Math.tan(THREE.MathUtils.degToRad(this.camera.fov) / 2);
    const aspect = Math.max(this.camera.aspect, 0.2);
    const fit = Math.max(size.y / 2 / tan, size.x / 2 / (tan * aspect)) + size.z / 2;
    const radius = Math.max(size.length() / 2, 1e-3);
    const distance = Math.max(fit * 1.25, radius * 1.1);
    this.camera.position.set(0, 0.25, 1).normalize().multiplyScalar(distance);
    this.camera.near = distance / 100;
    this.camera.far = distance * 20;
    this.camera.updateProjectionMatrix();
    this.controls.target.set(0, 0, 0);
    this.controls.minDistance = radius * 0.5;
    this.controls.maxDistance = distance * 5;
    this.controls.update();
  }

  clear() {
    if (this.object) {
      this.scene.remove(this.object);
      this.object.traverse((node) => {
        if (!node.isMesh) return;
        node.geometry.dispose();
        for (const material of [].concat(node.material)) {
          for (const value of Object.values(material)) if (value && value.isTexture) value.dispose();
          material.dispose();
        }
      });
      this.object = null;
    }
    for (const url of this.urls) URL.revokeObjectURL(url);
    this.urls = [];
    this.requestRender();
  }
}

function describe(object) {
  let triangles = 0;
  let texture = null;
  object.traverse((node) => {
    if (!node.isMesh) return;
    const g = node.geometry;
    triangles += (g.index ? g.index.count : g.attributes.position.count) / 3;
    for (const material of [].concat(node.material)) if (material.map && material.map.image) texture = material.map.image;
  });
  return { triangles, textured: texture !== null, textureSize: texture ? [texture.width, texture.height] : null };
}
